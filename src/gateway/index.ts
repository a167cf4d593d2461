import { Hono } from "hono";
const app = new Hono();
app.get("/", (c) => c.text("lens gateway"));
export default app;
