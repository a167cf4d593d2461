/**
 * Starts the stand-in backends (Node servers) once for the gateway tests, which run inside
 * workerd and reach them over loopback; their URLs are handed to the tests with `provide`.
 */
import { type AddressInfo, createServer } from "node:net";
import type { TestProject } from "vitest/node";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import { createBackendApp } from "../../src/gpu-backend/app.js";
import { loadModel } from "../../src/gpu-backend/load.js";
import { type Behaviour, TEST_BACKEND_SECRET, type TestBackend, startTestBackend } from "../../dev/stand-in-backend.js";

const EMBEDDED_MODEL = fileURLToPath(new URL("../../models/lens-tiny-chat", import.meta.url));

/** The real backend on the embedded model, for end-to-end tests; null when the model is absent. */
async function startRealBackend(): Promise<TestBackend | null> {
  if (!existsSync(`${EMBEDDED_MODEL}/genai_config.json`)) return null;
  const model = await loadModel(EMBEDDED_MODEL, { executionProvider: "cpu", maxBatch: 8, maxQueue: 64 });
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve(
      { fetch: createBackendApp(model, { secret: TEST_BACKEND_SECRET }).fetch, port: 0, hostname: "127.0.0.1" },
      () => resolve(s),
    );
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    behaviour: "echo",
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const BEHAVIOURS: Behaviour[] = ["echo", "hang", "stall", "die", "malformed", "error-frame", "overloaded"];

/** A loopback port with nothing listening: connections to it are refused. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export default async function setup(project: TestProject) {
  const started: TestBackend[] = [];
  const urls: Record<string, string> = {};
  for (const behaviour of BEHAVIOURS) {
    const backend = await startTestBackend(behaviour, { secret: TEST_BACKEND_SECRET });
    started.push(backend);
    urls[behaviour] = backend.url;
  }
  // A second and third healthy backend for affinity and failover, one serving an extra model.
  const echoB = await startTestBackend("echo", { secret: TEST_BACKEND_SECRET });
  const echoC = await startTestBackend("echo", {
    models: ["lens-test-echo", "lens-test-other"],
    secret: TEST_BACKEND_SECRET,
  });
  // A slow one, to watch a stream while it runs and to see a client's disconnect reach the backend.
  const slow = await startTestBackend("echo", { tokenDelayMs: 100, secret: TEST_BACKEND_SECRET });
  // One that holds only the deltas the gateway uploads to it (PUT /internal/v1/deltas/:id).
  const strict = await startTestBackend("echo", { strictDeltas: true, secret: TEST_BACKEND_SECRET });
  started.push(echoB, echoC, slow, strict);
  urls["strict"] = strict.url;
  urls["slow"] = slow.url;
  urls["echoB"] = echoB.url;
  urls["echoC"] = echoC.url;
  // The backend the worker's own bindings name (vitest.config.ts), for requests sent through SELF.
  const selfUrl = process.env["LENS_TEST_SELF_BACKEND"];
  if (selfUrl) {
    const self = await startTestBackend("echo", {
      strictDeltas: true,
      secret: TEST_BACKEND_SECRET,
      port: Number(new URL(selfUrl).port),
    });
    started.push(self);
    urls["self"] = self.url;
  }
  urls["refused"] = `http://127.0.0.1:${await closedPort()}`;
  const real = await startRealBackend();
  if (real) {
    started.push(real);
    urls["real"] = real.url;
  }
  project.provide("backends", urls);
  return async () => {
    await Promise.all(started.map((b) => b.close()));
  };
}
