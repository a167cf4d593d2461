/**
 * The GPU backend as a process: `node --import tsx src/gpu-backend/server.ts`.
 *   BACKEND_PORT (8788), LENS_MODEL_DIR (models/lens-tiny-chat), LENS_EXECUTION_PROVIDER (cpu|cuda),
 *   LENS_MAX_BATCH (32), LENS_MAX_QUEUE (256), LENS_MAX_QUEUE_WAIT_MS (5000: refuse new work while the oldest waiting request has waited longer), LENS_JOBS_DIR (.lens/jobs: Lens job records and artifacts),
 *   LENS_BACKEND_SECRET (required, >= 16 characters: the bearer token the gateway sends as BACKEND_SECRET)
 */
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import { createBackendApp } from "./app.js";
import { MIN_SECRET_LENGTH } from "./shared-secret.js";
import { LensJobRunner } from "./lens/jobs/runner.js";
import { type ExecutionProvider, loadModel } from "./load.js";

const DEFAULT_MODEL_DIR = fileURLToPath(new URL("../../models/lens-tiny-chat", import.meta.url));

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (!raw) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got '${raw}'`);
  return n;
}

const port = intEnv("BACKEND_PORT", 8788);
const modelDir = process.env["LENS_MODEL_DIR"] || DEFAULT_MODEL_DIR;
const ep = (process.env["LENS_EXECUTION_PROVIDER"] || "cpu") as ExecutionProvider;
if (ep !== "cpu" && ep !== "cuda") throw new Error(`LENS_EXECUTION_PROVIDER must be cpu or cuda, got '${ep}'`);

// Checked before the model loads, so that a misconfigured deployment fails in milliseconds.
const secret = process.env["LENS_BACKEND_SECRET"] ?? "";
if (secret.length < MIN_SECRET_LENGTH) {
  console.error(
    `lens backend: set LENS_BACKEND_SECRET (at least ${MIN_SECRET_LENGTH} characters) to the secret the gateway sends as BACKEND_SECRET; the internal API refuses every caller without it.`,
  );
  process.exit(2);
}

const model = await loadModel(modelDir, {
  executionProvider: ep,
  maxBatch: intEnv("LENS_MAX_BATCH", 32),
  maxQueue: intEnv("LENS_MAX_QUEUE", 256),
  maxQueueWaitMs: intEnv("LENS_MAX_QUEUE_WAIT_MS", 5_000),
});
// Lens probe / train / eval jobs at /internal/v1/lens; their records survive a restart.
const lensJobs = new LensJobRunner(model);
const app = createBackendApp(model, { secret, lens: lensJobs });
const server = serve({ fetch: app.fetch, port, hostname: process.env["BACKEND_HOST"] || "127.0.0.1" }, (addr) => {
  console.log(
    `lens backend: serving ${model.info.id} (${model.info.numLayers} layers, hidden ${model.info.hiddenSize}) on http://127.0.0.1:${addr.port} [${ep}]`,
  );
});
// Node closes an idle keep-alive connection after 5 s by default; the gateway's connection pool
// may reuse it at that moment and see a reset ("Network connection lost") before any byte, which
// fails the request under load. Keep idle connections far longer than any pool holds them.
(server as import("node:http").Server).keepAliveTimeout = 10 * 60_000;
const stop = () => server.close(() => void lensJobs.close().finally(() => process.exit(0)));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
