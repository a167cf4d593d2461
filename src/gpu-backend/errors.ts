/** The body of every error the backend's internal API answers (the gateway parses it with the shared schema). */
import type { BackendErrorBody, BackendErrorCode } from "../protocol/backend.js";

export function errorBody(code: BackendErrorCode, message: string): BackendErrorBody {
  return { error: { code, message } };
}
