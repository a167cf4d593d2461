import type { MiddlewareHandler } from "hono";
import { requestId as honoRequestId } from "hono/request-id";
import type { GatewayEnv } from "../env.js";

/** A caller's own id is kept when it is short and plain, so that logs on both sides line up. */
const MAX_ID = 128;
// Hono keeps ids of letters, digits and _=-; ids with '.' or ':' (trace ids such as "span.1:2") are kept too.
const CALLER_ID = /^[\w.:=-]{1,128}$/;

/** `x-request-id`: the caller's when plain, else a new UUID; echoed on every answer. */
export const requestId = (): MiddlewareHandler<GatewayEnv> =>
  honoRequestId({
    limitLength: MAX_ID,
    generator: (c) => {
      const given = c.req.header("x-request-id");
      return given !== undefined && CALLER_ID.test(given) ? given : crypto.randomUUID();
    },
  });
