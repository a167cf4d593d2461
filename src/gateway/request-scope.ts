import type { Context } from "hono";
import type { Deadline } from "./deadline.js";
import type { GatewayEnv } from "./env.js";

/**
 * What a service needs of the request it works for: the deadline its waits race, and the request's
 * own `waitUntil` for work that goes on after the answer. Work is never shared between requests:
 * a promise tied to one request's I/O may never settle once that request ends.
 */
export interface RequestScope {
  deadline: Deadline;
  waitUntil(p: Promise<unknown>): void;
}

export function scopeOf(c: Context<GatewayEnv>): RequestScope {
  return { deadline: c.get("deadline"), waitUntil: (p) => c.executionCtx.waitUntil(p) };
}
