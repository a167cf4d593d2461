import type { MiddlewareHandler } from "hono";
import type { GatewayEnv } from "../env.js";

// A caller's own id is kept when it is short and plain, so that logs on both sides line up.
const CALLER_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export const requestId = (): MiddlewareHandler<GatewayEnv> => async (c, next) => {
  const given = c.req.header("x-request-id");
  const id = given && CALLER_ID.test(given) ? given : crypto.randomUUID();
  c.set("requestId", id);
  c.header("x-request-id", id);
  await next();
};
