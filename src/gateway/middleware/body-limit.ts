import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { type GatewayEnv, gatewayConfig } from "../env.js";
import { GatewayError } from "../errors.js";

/** Hono's body limit with the size from configuration and an OpenAI-shaped 413. */
export const limitBody = (): MiddlewareHandler<GatewayEnv> => (c, next) => {
  const maxSize = gatewayConfig(c.env).maxBodyBytes;
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new GatewayError(413, "invalid_request_error", `The request body is larger than the limit of ${maxSize} bytes.`, "request_too_large");
    },
  })(c, next);
};
