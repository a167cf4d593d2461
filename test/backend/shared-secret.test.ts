/** The backend's internal API refuses callers without the shared secret, on every route but /livez. */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackendApp } from "../../src/gpu-backend/app.js";
import { LensJobRunner } from "../../src/gpu-backend/lens/jobs/runner.js";
import { loadModel } from "../../src/gpu-backend/load.js";
import {
  BackendErrorBody,
  GENERATE_PATH,
  HEALTH_PATH,
  LIVE_PATH,
  MODELS_PATH,
  backendAuthorization,
} from "../../src/protocol/backend.js";
import { DELTAS_PATH } from "../../src/protocol/delta.js";
import { LENS_PATH } from "../../src/protocol/lens-jobs.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

const embedded = MODEL_CASES[0]!;
const SECRET = "a-shared-secret-for-this-test-only";
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

const ROUTES: Array<[string, string]> = [
  ["GET", HEALTH_PATH],
  ["GET", MODELS_PATH],
  ["GET", "/metrics"],
  ["POST", GENERATE_PATH],
  ["GET", DELTAS_PATH],
  ["PUT", `${DELTAS_PATH}/some-delta`],
  ["DELETE", `${DELTAS_PATH}/some-delta`],
  ["GET", `${LENS_PATH}/jobs`],
  ["POST", `${LENS_PATH}/jobs`],
  ["GET", `${LENS_PATH}/jobs/job-1-deadbeef`],
  ["DELETE", `${LENS_PATH}/jobs/job-1-deadbeef`],
  ["GET", "/no/such/route"],
];

describe.skipIf(embedded.skip !== null)("backend shared secret", () => {
  let app: ReturnType<typeof createBackendApp>;
  let jobs: LensJobRunner;
  const jobsDir = mkdtempSync(join(tmpdir(), "lens-secret-jobs-"));
  beforeAll(async () => {
    const model = await loadModel(embedded.dir, { executionProvider: "cpu", maxBatch: 1, maxQueue: 2 });
    jobs = new LensJobRunner(model, { dir: jobsDir });
    // The app mounts the Lens routes after the guard, as for server.ts: the guard must cover them too.
    app = createBackendApp(model, { secret: SECRET, lens: jobs });
  });
  afterAll(async () => {
    await jobs?.close();
    rmSync(jobsDir, { recursive: true, force: true });
  });

  const presented: Array<[string, Record<string, string>]> = [
    ["no key", {}],
    ["a wrong secret", { authorization: backendAuthorization("not-the-secret-at-all") }],
    ["the secret without Bearer", { authorization: SECRET }],
    ["a prefix of it", { authorization: backendAuthorization(SECRET.slice(0, -1)) }],
  ];
  for (const [who, headers] of presented) {
    it(`answers 401 to ${who} on every internal route, echoing nothing`, async () => {
      for (const [method, path] of ROUTES) {
        const res = await app.request(path, {
          method,
          headers: { ...headers, "content-type": "application/json" },
          body: method === "GET" || method === "DELETE" ? undefined : "{}",
        });
        expect(res.status, `${method} ${path}`).toBe(401);
        const text = await res.text();
        expect(BackendErrorBody.parse(JSON.parse(text)).error.code).toBe("unauthorized");
        expect(text).not.toContain(SECRET.slice(0, 8));
      }
    });
  }

  it("lets the secret through, and /livez without it", async () => {
    const auth = { authorization: backendAuthorization(SECRET) };
    expect((await app.request(MODELS_PATH, { headers: auth })).status).toBe(200);
    expect((await app.request(HEALTH_PATH, { headers: auth })).status).toBe(200);
    expect((await app.request(`${LENS_PATH}/jobs`, { headers: auth })).status).toBe(200);
    expect((await app.request("/no/such/route", { headers: auth })).status).toBe(404);
    const live = await app.request(LIVE_PATH);
    expect(live.status).toBe(200);
    expect(await live.json()).toEqual({ ok: true });
  });
});

describe("backend process", () => {
  for (const [what, value] of [
    ["no secret", undefined],
    ["a short secret", "short"],
  ] as const) {
    it(`refuses to start with ${what}, saying which variable to set`, () => {
      const env: Record<string, string | undefined> = { ...process.env, BACKEND_PORT: "1" };
      if (value === undefined) delete env["LENS_BACKEND_SECRET"];
      else env["LENS_BACKEND_SECRET"] = value;
      const run = spawnSync(process.execPath, ["--import", "tsx", "src/gpu-backend/server.ts"], {
        cwd: ROOT,
        env,
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(run.status).toBe(2);
      expect(run.stderr).toContain("LENS_BACKEND_SECRET");
    });
  }
});
