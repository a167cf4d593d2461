/**
 * The backend's internal HTTP API (used by the gateway only): generate (NDJSON stream), models,
 * health, metrics. Requests and frames are validated with the schemas shared with the gateway.
 */
import { Hono } from "hono";
import {
  type BackendErrorBody,
  type BackendErrorCode,
  GENERATE_PATH,
  type GenerateFrame,
  GenerateRequest,
  HEALTH_PATH,
  LIVE_PATH,
  MODELS_PATH,
  NDJSON_CONTENT_TYPE,
  encodeFrame,
} from "../protocol/backend.js";
import { DELTAS_PATH } from "../protocol/delta.js";
import { deltaRoutes } from "./deltas/routes.js";
import { toRowDelta } from "./deltas/row-delta.js";
import { QueueFullError, type RowDelta } from "./generation/engine.js";
import type { LoadedModel } from "./load.js";
import { Metrics } from "./metrics.js";
import { requireSharedSecret } from "./shared-secret.js";

export interface BackendAppOptions {
  metrics?: Metrics;
  /**
   * The secret the gateway sends (`LENS_BACKEND_SECRET`). The server process refuses to start
   * without one; only in-process tests leave it out.
   */
  secret?: string;
}

function errorBody(code: BackendErrorCode, message: string): BackendErrorBody {
  return { error: { code, message } };
}

export function createBackendApp(model: LoadedModel, options: BackendAppOptions = {}) {
  const app = new Hono();
  const metrics = options.metrics ?? new Metrics();
  const { info, engine, tokenizer, deltas } = model;
  // First, so that it guards every route registered after it too (Lens jobs are mounted later).
  if (options.secret !== undefined) app.use("*", requireSharedSecret(options.secret));
  app.get(LIVE_PATH, (c) => c.json({ ok: true }));
  app.route(DELTAS_PATH, deltaRoutes(deltas));

  app.get(HEALTH_PATH, (c) =>
    c.json({
      ok: true,
      model: info.id,
      // What a delta must match to be accepted here.
      fingerprint: model.fingerprint,
      hidden_size: info.hiddenSize,
      num_layers: info.numLayers,
      deltas: engine.supportsDeltas,
      running: engine.stats.running,
      queued: engine.stats.queued,
    }),
  );
  app.get(MODELS_PATH, (c) => c.json({ models: [{ id: info.id, created: model.created, owned_by: "lens" }] }));
  app.get("/metrics", (c) => c.text(metrics.render(engine.stats, deltas.size), 200, { "content-type": "text/plain; version=0.0.4" }));

  app.post(GENERATE_PATH, async (c) => {
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
    if (req.model !== info.id) return c.json(errorBody("model_not_found", `this backend serves '${info.id}', not '${req.model}'`), 404);
    let delta: RowDelta | null = null;
    if (req.delta) {
      const held = deltas.get(req.delta.id);
      if (!held) return c.json(errorBody("delta_not_loaded", `delta '${req.delta.id}' is not loaded here`), 409);
      if (!engine.supportsDeltas) return c.json(errorBody("delta_not_loaded", "this backend runs without delta hooks"), 409);
      delta = toRowDelta(req.delta.id, req.delta.scale, held.layers);
    }

    let promptIds: number[];
    try {
      promptIds = tokenizer.promptIds(req.messages);
    } catch (err) {
      return c.json(errorBody("invalid_request", `the chat template could not render these messages: ${(err as Error).message}`), 400);
    }
    if (promptIds.length >= info.contextLength) {
      return c.json(errorBody("invalid_request", `the prompt is ${promptIds.length} tokens; this model's context is ${info.contextLength}`), 400);
    }

    const abort = new AbortController();
    const encoder = new TextEncoder();
    let controllerRef: ReadableStreamDefaultController<Uint8Array> | undefined;
    const started = performance.now();
    let firstToken = 0;
    const emit = (frame: GenerateFrame) => {
      if (!controllerRef || abort.signal.aborted) return;
      if (frame.type === "text" && !firstToken) firstToken = performance.now() - started;
      controllerRef.enqueue(encoder.encode(encodeFrame(frame)));
      if (frame.type === "end" || frame.type === "error") {
        metrics.finished(frame.type === "end" ? frame.finish_reason : "error", req.language, firstToken);
        controllerRef.close();
      }
    };
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controllerRef = controller;
        controller.enqueue(encoder.encode(encodeFrame({ type: "start", model: info.id, prompt_tokens: promptIds.length })));
      },
      cancel() {
        // The gateway (or its client) went away: the row leaves the batch before the next step.
        abort.abort();
        metrics.finished("cancelled", req.language, firstToken);
      },
    });
    try {
      engine.submit({ promptIds, sampling: req.sampling, delta, emit, signal: abort.signal });
    } catch (err) {
      if (err instanceof QueueFullError) {
        metrics.rejected();
        return c.json(errorBody("overloaded", "the generation queue is full"), 503, { "retry-after": String(err.retryAfterS) });
      }
      throw err;
    }
    metrics.accepted();
    return c.body(body, 200, { "content-type": NDJSON_CONTENT_TYPE, "cache-control": "no-cache" });
  });

  app.notFound((c) => c.json(errorBody("invalid_request", `unknown route ${c.req.method} ${c.req.path}`), 404));
  app.onError((err, c) => {
    console.error("backend error", err);
    return c.json(errorBody("internal", "the backend failed to handle this request"), 500);
  });
  return app;
}
