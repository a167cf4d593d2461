/**
 * The generate route; the backend app mounts it at GENERATE_PATH (`/internal/v1/generate`). Only the
 * gateway calls it.
 *
 *   POST /   JSON body: GenerateRequest (src/protocol/backend.ts)
 *            200 NDJSON frames: `start`, `text`..., then `end` or `error`; the stream closes after it
 *            4xx / 503 (queue full, with retry-after) with { error: { code, message } }
 *
 * A caller that goes away cancels the stream: the row leaves the batch before the next step.
 */
import { Hono } from "hono";
import { type GenerateFrame, GenerateRequest, NDJSON_CONTENT_TYPE, encodeFrame } from "../../protocol/backend.js";
import { toRowDelta } from "../deltas/row-delta.js";
import { errorBody } from "../errors.js";
import type { LoadedModel } from "../load.js";
import type { Metrics, Outcome } from "../metrics.js";
import { QueueFullError, type RowDelta } from "./engine.js";

export function generateRoutes(model: LoadedModel, metrics: Metrics): Hono {
  const app = new Hono();
  const { info, engine, tokenizer, deltas } = model;

  app.post("/", async (c) => {
    let raw: unknown;
    try {
      raw = await c.req.json();
    } catch {
      return c.json(errorBody("invalid_request", "the body is not JSON"), 400);
    }
    const parsed = GenerateRequest.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return c.json(errorBody("invalid_request", `${issue?.path.join(".")}: ${issue?.message}`), 400);
    }
    const req = parsed.data;
    if (req.model !== info.id)
      return c.json(errorBody("model_not_found", `this backend serves '${info.id}', not '${req.model}'`), 404);
    let delta: RowDelta | null = null;
    if (req.delta) {
      const held = deltas.get(req.delta.id);
      if (!held) return c.json(errorBody("delta_not_loaded", `delta '${req.delta.id}' is not loaded here`), 409);
      if (!engine.supportsDeltas)
        return c.json(errorBody("delta_not_loaded", "this backend runs without delta hooks"), 409);
      delta = toRowDelta(req.delta.id, req.delta.scale, held.layers);
    }

    let promptIds: number[];
    try {
      promptIds = tokenizer.promptIds(req.messages);
    } catch (err) {
      return c.json(
        errorBody("invalid_request", `the chat template could not render these messages: ${(err as Error).message}`),
        400,
      );
    }
    if (promptIds.length >= info.contextLength) {
      return c.json(
        errorBody(
          "invalid_request",
          `the prompt is ${promptIds.length} tokens; this model's context is ${info.contextLength}`,
        ),
        400,
      );
    }

    const abort = new AbortController();
    const encoder = new TextEncoder();
    let controllerRef: ReadableStreamDefaultController<Uint8Array> | undefined;
    const started = performance.now();
    let firstToken = 0;
    let counted = false;
    // Once per request: a cancel that comes after the last frame was queued must not count it again.
    const finished = (outcome: Outcome) => {
      if (counted) return;
      counted = true;
      metrics.finished(outcome, req.language, firstToken, performance.now() - started);
    };
    const emit = (frame: GenerateFrame) => {
      if (!controllerRef || abort.signal.aborted) return;
      if (frame.type === "text" && !firstToken) firstToken = performance.now() - started;
      controllerRef.enqueue(encoder.encode(encodeFrame(frame)));
      if (frame.type === "end" || frame.type === "error") {
        finished(frame.type === "end" ? frame.finish_reason : "error");
        controllerRef.close();
      }
    };
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controllerRef = controller;
        controller.enqueue(
          encoder.encode(encodeFrame({ type: "start", model: info.id, prompt_tokens: promptIds.length })),
        );
      },
      cancel() {
        // The gateway (or its client) went away: the row leaves the batch before the next step.
        abort.abort();
        finished("cancelled");
      },
    });
    try {
      engine.submit({ promptIds, sampling: req.sampling, delta, emit, signal: abort.signal });
    } catch (err) {
      if (err instanceof QueueFullError) {
        metrics.rejected();
        return c.json(errorBody("overloaded", "the generation queue is full"), 503, {
          "retry-after": String(err.retryAfterS),
        });
      }
      throw err;
    }
    metrics.accepted();
    return c.body(body, 200, { "content-type": NDJSON_CONTENT_TYPE, "cache-control": "no-cache" });
  });

  return app;
}
