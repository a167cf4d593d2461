/**
 * The backend's internal HTTP API (used by the gateway only). Each group of routes is its own Hono app,
 * mounted here at its path: generate (NDJSON stream), deltas, and Lens jobs when a runner is given;
 * liveness, health, models and metrics are one line each. Requests and frames are validated with the
 * schemas shared with the gateway.
 */
import { Hono } from "hono";
import { GENERATE_PATH, HEALTH_PATH, LIVE_PATH, MODELS_PATH } from "../protocol/backend.js";
import { DELTAS_PATH } from "../protocol/delta.js";
import { LENS_PATH } from "../protocol/lens-jobs.js";
import { deltaRoutes } from "./deltas/routes.js";
import { errorBody } from "./errors.js";
import { generateRoutes } from "./generation/routes.js";
import { lensRoutes } from "./lens/jobs/routes.js";
import type { LensJobRunner } from "./lens/jobs/runner.js";
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
  /** Serves Lens probe / train / eval jobs at LENS_PATH with this runner (its owner closes it on shutdown). */
  lens?: LensJobRunner;
}

export function createBackendApp(model: LoadedModel, options: BackendAppOptions = {}) {
  const app = new Hono();
  const metrics = options.metrics ?? new Metrics();
  const { info, engine, deltas } = model;
  // First, so that it guards every route registered after it.
  if (options.secret !== undefined) app.use("*", requireSharedSecret(options.secret));
  app.get(LIVE_PATH, (c) => c.json({ ok: true }));
  app.route(GENERATE_PATH, generateRoutes(model, metrics));
  app.route(DELTAS_PATH, deltaRoutes(deltas));
  if (options.lens) app.route(LENS_PATH, lensRoutes(options.lens));

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
  app.get("/metrics", async (c) =>
    c.text(await metrics.render(engine.stats, deltas.size), 200, { "content-type": "text/plain; version=0.0.4" }),
  );

  app.notFound((c) => c.json(errorBody("invalid_request", `unknown route ${c.req.method} ${c.req.path}`), 404));
  app.onError((err, c) => {
    console.error("backend error", err);
    return c.json(errorBody("internal", "the backend failed to handle this request"), 500);
  });
  return app;
}
