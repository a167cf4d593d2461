/**
 * The internal API between the gateway and a GPU backend. Both sides import these schemas and
 * validate what they receive with them; nothing else crosses the wire.
 *
 * Generation is always streamed as NDJSON (`application/x-ndjson`), one frame per line:
 *   {"type":"start", ...}   once, after the prompt is accepted
 *   {"type":"text", ...}    zero or more, each a piece of UTF-8-complete text
 *   {"type":"end", ...}     once, with finish reason and usage
 *   {"type":"error", ...}   instead of `end`, when generation fails after it started
 * A request refused before generation starts gets a non-2xx status with a `BackendErrorBody`.
 */
import { z } from "zod";

export const GENERATE_PATH = "/internal/v1/generate";
export const MODELS_PATH = "/internal/v1/models";
export const HEALTH_PATH = "/internal/v1/health";
export const NDJSON_CONTENT_TYPE = "application/x-ndjson";
/** Unauthenticated liveness probe: says only that the process answers. Every other route needs the secret. */
export const LIVE_PATH = "/livez";

/**
 * Every call to the internal API carries the deployment's shared secret as a bearer token; a backend
 * answers 401 `unauthorized` without it. The value is never logged or echoed by either side.
 */
export function backendAuthorization(secret: string): string {
  return `Bearer ${secret}`;
}

export const BackendMessage = z.object({
  role: z.enum(["system", "user", "assistant"]),
  content: z.string(),
});
export type BackendMessage = z.infer<typeof BackendMessage>;

export const DeltaRef = z.object({
  id: z.string().min(1).max(200),
  /** 0 turns the edit off, 1 applies it as trained. */
  scale: z.number().finite().min(-4).max(4).default(1),
});
export type DeltaRef = z.infer<typeof DeltaRef>;

export const SamplingParams = z.object({
  max_tokens: z.number().int().positive().optional(),
  /** 0 means greedy. */
  temperature: z.number().finite().min(0).max(2).default(1),
  /** 0 means greedy, like temperature 0. */
  top_p: z.number().finite().min(0).max(1).default(1),
  seed: z.number().int().optional(),
  stop: z.array(z.string().min(1)).max(4).default([]),
});
export type SamplingParams = z.infer<typeof SamplingParams>;

export const GenerateRequest = z.object({
  request_id: z.string().min(1).max(200),
  model: z.string().min(1).max(200),
  messages: z.array(BackendMessage).min(1),
  sampling: SamplingParams,
  /** The language the gateway decided on (`und` when unknown); the backend uses it for metrics only. */
  language: z.string().min(2).max(3),
  delta: DeltaRef.nullable(),
});
export type GenerateRequest = z.infer<typeof GenerateRequest>;
export type GenerateRequestInput = z.input<typeof GenerateRequest>;

export const FinishReason = z.enum(["stop", "length"]);
export type FinishReason = z.infer<typeof FinishReason>;

const Usage = z.object({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
});

export const BackendErrorCode = z.enum([
  "invalid_request",
  "model_not_found",
  /** The request names a delta the backend does not hold: the gateway sends it and retries once. */
  "delta_not_loaded",
  "overloaded",
  "cancelled",
  /** The caller did not present the shared secret. */
  "unauthorized",
  "internal",
]);
export type BackendErrorCode = z.infer<typeof BackendErrorCode>;

export const BackendError = z.object({
  code: BackendErrorCode,
  message: z.string(),
});
export type BackendError = z.infer<typeof BackendError>;

export const BackendErrorBody = z.object({ error: BackendError });
export type BackendErrorBody = z.infer<typeof BackendErrorBody>;

export const GenerateFrame = z.discriminatedUnion("type", [
  z.object({ type: z.literal("start"), model: z.string(), prompt_tokens: z.number().int().nonnegative() }),
  z.object({ type: z.literal("text"), text: z.string() }),
  z.object({ type: z.literal("end"), finish_reason: FinishReason, usage: Usage }),
  z.object({ type: z.literal("error"), error: BackendError }),
]);
export type GenerateFrame = z.infer<typeof GenerateFrame>;

export const BackendModel = z.object({
  id: z.string().min(1),
  created: z.number().int().nonnegative(),
  owned_by: z.string().default("lens"),
});
export type BackendModel = z.infer<typeof BackendModel>;

export const ModelsResponse = z.object({ models: z.array(BackendModel) });
export type ModelsResponse = z.infer<typeof ModelsResponse>;

/** Serialises one frame as an NDJSON line. */
export function encodeFrame(frame: GenerateFrame): string {
  return `${JSON.stringify(frame)}\n`;
}
