/** Failures of a backend once it is streaming; the caller turns them into an OpenAI error. */
import type { BackendError } from "../../../protocol/backend.js";
import { GatewayError, backendFailure, backendTimeout } from "../../errors.js";

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
  if (err instanceof BackendSilentError) return backendTimeout(`The backend stopped sending for ${err.ms} ms; the reply is incomplete.`);
  if (err instanceof BackendReportedError) return backendFailure(`The backend failed during generation (${err.error.code}): ${err.message}`);
  if (err instanceof BackendProtocolError) return backendFailure(`The backend broke the protocol (${err.message}); the reply is incomplete.`);
  return backendFailure("The connection to the backend was lost; the reply is incomplete.");
}
