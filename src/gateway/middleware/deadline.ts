import type { MiddlewareHandler } from "hono";
import { boundedD1, boundedR2 } from "../bounded-bindings.js";
import { Deadline } from "../deadline.js";
import { type GatewayEnv, gatewayConfig, replaceBindings } from "../env.js";

/**
 * Gives the request its deadline (BACKEND_TIMEOUT_MS from now) and, as `c.env`, D1 and R2 views
 * whose every call races it: a storage call that never settles cannot hold the request. The real
 * bindings stay in `c.var.bindings` for work that bounds itself.
 */
export const deadline = (): MiddlewareHandler<GatewayEnv> => async (c, next) => {
  const raw = c.env;
  const d = Deadline.after(gatewayConfig(raw).backendTimeoutMs);
  c.set("deadline", d);
  c.set("bindings", raw);
  c.env = replaceBindings(raw, { DB: boundedD1(raw.DB, d), ADAPTERS: boundedR2(raw.ADAPTERS, d) });
  await next();
  d.answerStarted();
};
