import type { MiddlewareHandler } from "hono";
import type { GatewayEnv } from "../env.js";
import { GatewayError } from "../errors.js";
import { type KeyScope, verifyKey } from "../services/api-keys.js";

/** `Authorization: Bearer <key>`; the key must exist, be active and have exactly this scope. */
export const requireKey =
  (scope: KeyScope): MiddlewareHandler<GatewayEnv> =>
  async (c, next) => {
    const header = c.req.header("authorization");
    const match = header?.match(/^Bearer\s+(\S+)\s*$/i);
    if (!match?.[1]) {
      throw new GatewayError(
        401,
        "invalid_request_error",
        "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
        "missing_api_key",
      );
    }
    const found = await verifyKey(c.env.DB, match[1]);
    if (!found) {
      throw new GatewayError(401, "invalid_request_error", "Incorrect API key provided.", "invalid_api_key");
    }
    if (found.scope !== scope) {
      throw new GatewayError(
        403,
        "permission_error",
        scope === "admin"
          ? "This key is a client key; /admin routes need an admin key."
          : "This key is an admin key; /v1 routes need a client key.",
        "wrong_key_scope",
      );
    }
    c.set("keyId", found.id);
    c.set("keyLimits", found.limits);
    await next();
  };
