/**
 * Opens a generation on a backend: the first backend in preference order, and on a connection
 * failure before any byte (or an "overloaded" answer) the next one, once. A backend that stays
 * silent past the timeout is not retried elsewhere: it may still be working, and a second copy
 * would double the load exactly when the fleet is slow. All attempts share the request's deadline,
 * up to and including the first frame.
 */
import {
  BackendErrorBody,
  type BackendError,
  GENERATE_PATH,
  type GenerateFrame,
  type GenerateRequest,
} from "../../../protocol/backend.js";
import type { Deadline } from "../../deadline.js";
import type { GatewayConfig } from "../../env.js";
import { GatewayError, backendFailure, backendTimeout, midStreamError, noBackend } from "../../errors.js";
import { FrameReader } from "./frames.js";
import { markDown, markUp } from "./health.js";

type StartFrame = Extract<GenerateFrame, { type: "start" }>;

export interface OpenGeneration {
  backend: string;
  start: StartFrame;
  frames: FrameReader;
}

type Attempt = { ok: true; value: OpenGeneration } | { ok: false; retry: boolean; error: GatewayError };

const MAX_ATTEMPTS = 2;

export async function openGeneration(
  config: GatewayConfig,
  request: GenerateRequest,
  candidates: readonly string[],
  deadline: Deadline,
): Promise<OpenGeneration> {
  // Errors are built only on failure: an Error captures a stack trace, too costly for every request.
  let last: GatewayError | undefined;
  for (const url of candidates.slice(0, MAX_ATTEMPTS)) {
    if (deadline.budget() <= 0) throw last ?? backendTimeout();
    const attempt = await tryBackend(config, url, request, deadline);
    if (attempt.ok) return attempt.value;
    last = attempt.error;
    if (!attempt.retry) break;
  }
  throw last ?? noBackend();
}

async function tryBackend(
  config: GatewayConfig,
  url: string,
  request: GenerateRequest,
  deadline: Deadline,
): Promise<Attempt> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, deadline.budget());
  let response: Response;
  try {
    response = await fetch(url + GENERATE_PATH, {
      method: "POST",
      headers: { ...config.backendHeaders, "content-type": "application/json", "x-request-id": request.request_id },
      body: JSON.stringify(request),
      signal: controller.signal,
    });
  } catch {
    if (timedOut) return { ok: false, retry: false, error: backendTimeout() };
    markDown(url);
    return { ok: false, retry: true, error: noBackend("No backend could be reached; try again shortly.") };
  } finally {
    clearTimeout(timer);
  }
  markUp(url);

  if (!response.ok) return refusal(response);
  if (!response.body) return { ok: false, retry: false, error: backendFailure("The backend answered without a body.") };

  const frames = new FrameReader(response.body.getReader(), config.backendIdleTimeoutMs);
  let first: GenerateFrame | null;
  try {
    // The start frame is part of the answer's start: it comes within the deadline too.
    first = await frames.next(Math.max(1, Math.min(config.backendIdleTimeoutMs, deadline.budget())));
  } catch (err) {
    frames.cancel();
    return { ok: false, retry: false, error: midStreamError(err) };
  }
  if (first?.type === "start") return { ok: true, value: { backend: url, start: first, frames } };
  frames.cancel();
  if (first?.type === "error")
    return { ok: false, retry: first.error.code === "overloaded", error: fromBackendError(first.error) };
  return {
    ok: false,
    retry: false,
    error: backendFailure("The backend did not start the generation as the protocol requires."),
  };
}

async function refusal(response: Response): Promise<Attempt> {
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: handled below as a protocol failure.
  }
  const parsed = BackendErrorBody.safeParse(body);
  if (!parsed.success) {
    return {
      ok: false,
      retry: false,
      error: backendFailure(`The backend refused the request with status ${response.status}.`),
    };
  }
  const error = fromBackendError(parsed.data.error, response.headers.get("retry-after"));
  return { ok: false, retry: parsed.data.error.code === "overloaded", error };
}

function fromBackendError(error: BackendError, retryAfter: string | null = null): GatewayError {
  switch (error.code) {
    case "invalid_request":
      return new GatewayError(400, "invalid_request_error", error.message, "invalid_request");
    case "model_not_found":
      return new GatewayError(404, "invalid_request_error", error.message, "model_not_found", "model");
    case "overloaded":
      return new GatewayError(
        503,
        "server_error",
        "The backends are overloaded; try again shortly.",
        "backend_overloaded",
        null,
        { "retry-after": retryAfter && /^\d{1,4}$/.test(retryAfter) ? retryAfter : "1" },
      );
    case "delta_not_loaded":
      return new GatewayError(502, "server_error", error.message, "delta_not_loaded");
    case "unauthorized":
      // The operator's configuration, not the client's fault; the secret itself is never echoed.
      return backendFailure(
        "The backend refused the gateway's credentials: BACKEND_SECRET must equal the backends' LENS_BACKEND_SECRET.",
      );
    case "cancelled":
    case "internal":
      return backendFailure(`The backend failed: ${error.message}`);
  }
}
