/**
 * The internal API is for the gateway only: every route but the liveness probe needs the shared
 * secret as a bearer token. Compared in constant time (digests of equal length), never logged.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { LIVE_PATH } from "../protocol/backend.js";
import { errorBody } from "./errors.js";

/** Shortest secret the backend accepts: anything shorter is guessable. */
export const MIN_SECRET_LENGTH = 16;

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

export function requireSharedSecret(secret: string): MiddlewareHandler {
  if (secret.length < MIN_SECRET_LENGTH)
    throw new Error(`the backend's shared secret must be at least ${MIN_SECRET_LENGTH} characters`);
  const expected = digest(`Bearer ${secret}`);
  return async (c, next) => {
    if (c.req.path === LIVE_PATH) return next();
    const presented = c.req.header("authorization");
    if (presented === undefined || !timingSafeEqual(digest(presented), expected)) {
      return c.json(errorBody("unauthorized", "this internal API needs the deployment's shared secret"), 401);
    }
    return next();
  };
}
