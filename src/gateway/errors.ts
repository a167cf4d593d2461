/** OpenAI-shaped errors: every failure the gateway answers goes through `GatewayError`. */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { BackendError } from "../protocol/backend.js";
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

// Failures of a backend once it is streaming; turned into an OpenAI error where they surface.
export class BackendSilentError extends Error {
  constructor(readonly ms: number) {
    super(`the backend sent nothing for ${ms} ms`);
  }
}

export class BackendProtocolError extends Error {}

/** The backend itself reported a failure with an error frame. */
export class BackendReportedError extends Error {
  constructor(readonly error: BackendError) {
    super(error.message);
  }
}

export function midStreamError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof BackendSilentError)
    return backendTimeout(`The backend stopped sending for ${err.ms} ms; the reply is incomplete.`);
  if (err instanceof BackendReportedError)
    return backendFailure(`The backend failed during generation (${err.error.code}): ${err.message}`);
  if (err instanceof BackendProtocolError)
    return backendFailure(`The backend broke the protocol (${err.message}); the reply is incomplete.`);
  return backendFailure("The connection to the backend was lost; the reply is incomplete.");
}
