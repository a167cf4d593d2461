// The stand-in backend as its own process, so that it does not share the load generator's event loop.
import { startTestBackend } from "../../dev/stand-in-backend.js";

const port = Number(process.env["BACKEND_PORT"] ?? 0);
const backend = await startTestBackend("echo", { port });
console.log(backend.url);
process.on("SIGTERM", () => void backend.close().then(() => process.exit(0)));
