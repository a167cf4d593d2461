/** OpenAI-shaped errors: every failure the gateway answers goes through `GatewayError`. */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { OpenAIErrorBody, OpenAIErrorType } from "../protocol/openai.js";

export class GatewayError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly type: OpenAIErrorType,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "GatewayError";
  }

  body(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const invalidRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new GatewayError(400, "invalid_request_error", message, code, param);

export const notFound = (message: string, code: string, param: string | null = null) =>
  new GatewayError(404, "invalid_request_error", message, code, param);

// A 503 says when to come back, like the overloaded one: clients (and the OpenAI SDK) pace retries on it.
export const noBackend = (message = "No backend is available to serve this request; try again shortly.") =>
  new GatewayError(503, "server_error", message, "backend_unavailable", null, { "retry-after": "1" });

export const backendTimeout = (message = "The backend did not answer in time.") =>
  new GatewayError(504, "server_error", message, "backend_timeout");

export const backendFailure = (message: string) => new GatewayError(502, "server_error", message, "backend_error");

/** Turns anything thrown into a GatewayError; unknown errors never leak their message. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError(500, "server_error", "The gateway failed to handle this request.", "internal_error");
}
