/**
 * Internal failures of the backend are answered without stack traces, file paths, secrets or the
 * thrown message: the app's onError (a route that throws), a generation that fails mid-stream (the
 * error frame the gateway passes on to clients), the delta store and the Lens job routes failing.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createBackendApp } from "../../src/gpu-backend/app.js";
import { LensJobRunner } from "../../src/gpu-backend/lens/jobs/runner.js";
import { type LoadedModel, loadModel } from "../../src/gpu-backend/load.js";
import { GENERATE_PATH, backendAuthorization } from "../../src/protocol/backend.js";
import { DELTAS_PATH } from "../../src/protocol/delta.js";
import { LENS_PATH } from "../../src/protocol/lens-jobs.js";
import { TEST_BACKEND_SECRET } from "../../dev/echo.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

const embedded = MODEL_CASES[0]!;
const AUTH = { authorization: backendAuthorization(TEST_BACKEND_SECRET) };
/** The part of every thrown message that must never leave the process. */
const LEAKED = "sk-live-LEAKED-9d8c7b6a";
const boom = () => {
  const err = new Error(
    `connect to postgres://admin:${LEAKED}@db.internal/lens failed at /srv/lens/src/secret-module.ts:42`,
  );
  err.stack = `Error: ${err.message}\n    at secretFunction (/srv/lens/node_modules/x/index.ts:1:1)`;
  return err;
};
const STACK_MARKERS = ["    at ", ".ts:", "node_modules", "Error:"];

function expectNothingLeaked(text: string, where: string): void {
  for (const marker of STACK_MARKERS)
    expect(text.includes(marker), `${where}: '${marker}' in ${text.slice(0, 300)}`).toBe(false);
  expect(text, where).not.toContain(LEAKED);
  expect(text, where).not.toContain("postgres://");
  expect(text, where).not.toContain("/srv/lens");
  expect(text, where).not.toContain(TEST_BACKEND_SECRET);
}

function expectInternal(status: number, text: string, where: string): void {
  expect(status, `${where}: ${text}`).toBe(500);
  const body = JSON.parse(text) as { error: Record<string, unknown> };
  expect(Object.keys(body.error).sort(), where).toEqual(["code", "message"]);
  expect(body.error["code"], where).toBe("internal");
  expectNothingLeaked(text, where);
}

describe.skipIf(embedded.skip !== null)("backend: no secrets or stack traces in errors", () => {
  let model: LoadedModel;
  const dir = mkdtempSync(join(tmpdir(), "lens-errors-"));
  let jobs: LensJobRunner;

  beforeAll(async () => {
    model = await loadModel(embedded.dir, { executionProvider: "cpu", maxBatch: 2, maxQueue: 4 });
  });
  afterAll(async () => {
    await jobs?.close();
    rmSync(dir, { recursive: true, force: true });
    vi.restoreAllMocks();
  });

  const generateBody = (delta: unknown = null) =>
    JSON.stringify({
      request_id: "r-errors",
      model: model.info.id,
      messages: [{ role: "user", content: "Hello there" }],
      sampling: { max_tokens: 4, temperature: 0 },
      language: "en",
      delta,
    });

  it("onError: a route that throws answers a generic 500", async () => {
    const app = createBackendApp(model, { secret: TEST_BACKEND_SECRET });
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const submit = vi.spyOn(model.engine, "submit").mockImplementation(() => {
      throw boom();
    });
    try {
      const res = await app.request(GENERATE_PATH, {
        method: "POST",
        headers: { ...AUTH, "content-type": "application/json" },
        body: generateBody(),
      });
      expectInternal(res.status, await res.text(), "generate with a throwing engine");
      // The details go to the operator's log instead.
      expect(errors).toHaveBeenCalled();
    } finally {
      submit.mockRestore();
      errors.mockRestore();
    }
  });

  it("a generation that fails mid-stream reports an error frame without the thrown message", async () => {
    const app = createBackendApp(model, { secret: TEST_BACKEND_SECRET });
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const base = (model.engine as unknown as { base: { step: (...args: unknown[]) => Promise<unknown> } }).base;
    const step = vi.spyOn(base, "step").mockImplementation(async () => {
      throw boom();
    });
    try {
      const res = await app.request(GENERATE_PATH, {
        method: "POST",
        headers: { ...AUTH, "content-type": "application/json" },
        body: generateBody(),
      });
      expect(res.status).toBe(200);
      const text = await res.text();
      const frames = text
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as { type: string; error?: { code: string; message: string } });
      expect(frames[0]?.type).toBe("start");
      const last = frames.at(-1)!;
      expect(last.type, text).toBe("error");
      expect(last.error?.code).toBe("internal");
      expectNothingLeaked(text, "error frame");
      expect(step).toHaveBeenCalled();
    } finally {
      step.mockRestore();
      errors.mockRestore();
    }
    // The engine still works afterwards.
    const ok = await app.request(GENERATE_PATH, {
      method: "POST",
      headers: { ...AUTH, "content-type": "application/json" },
      body: generateBody(),
    });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('"type":"end"');
  });

  it("the delta store failing: every delta route answers a generic 500", async () => {
    const app = createBackendApp(model, { secret: TEST_BACKEND_SECRET });
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const spies = (["put", "manifest", "delete", "list"] as const).map((m) =>
      vi.spyOn(model.deltas, m).mockImplementation(() => {
        throw boom();
      }),
    );
    try {
      const form = new FormData();
      form.set("manifest", JSON.stringify({ id: "some-delta" }));
      form.set("tensors", new File([new Uint8Array(8)], "x.safetensors"));
      for (const [method, path, body] of [
        ["GET", DELTAS_PATH, undefined],
        ["GET", `${DELTAS_PATH}/some-delta`, undefined],
        ["DELETE", `${DELTAS_PATH}/some-delta`, undefined],
      ] as const) {
        const res = await app.request(path, { method, headers: AUTH, ...(body !== undefined ? { body } : {}) });
        expectInternal(res.status, await res.text(), `${method} ${path}`);
      }
      // A PUT is refused at manifest validation before the store is asked; either way nothing leaks.
      const put = await app.request(`${DELTAS_PATH}/some-delta`, { method: "PUT", headers: AUTH, body: form });
      expectNothingLeaked(await put.text(), "PUT");
    } finally {
      for (const s of spies) s.mockRestore();
      errors.mockRestore();
    }
  });

  it("the Lens job runner failing: every job route answers a generic 500", async () => {
    const throwing = () => {
      throw boom();
    };
    const runner = {
      submit: throwing,
      list: throwing,
      get: throwing,
      cancel: throwing,
      artifactPath: throwing,
      close: async () => {},
    } as unknown as LensJobRunner;
    const app = createBackendApp(model, { secret: TEST_BACKEND_SECRET, lens: runner });
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const id = "job-abc123-0000aaaa";
      for (const [method, path, body] of [
        ["POST", `${LENS_PATH}/jobs`, JSON.stringify({ kind: "probe", languages: ["en", "sw"], layers: [0] })],
        ["GET", `${LENS_PATH}/jobs`, undefined],
        ["GET", `${LENS_PATH}/jobs/${id}`, undefined],
        ["DELETE", `${LENS_PATH}/jobs/${id}`, undefined],
        ["GET", `${LENS_PATH}/jobs/${id}/artifact`, undefined],
      ] as const) {
        const res = await app.request(path, {
          method,
          headers: { ...AUTH, "content-type": "application/json" },
          ...(body !== undefined ? { body } : {}),
        });
        expectInternal(res.status, await res.text(), `${method} ${path}`);
      }
    } finally {
      errors.mockRestore();
    }
  });

  it("a real runner: a job whose work throws records no stack, and its routes leak nothing", async () => {
    jobs = new LensJobRunner(model, { dir, promptsFile: join(dir, "no-such-prompts.jsonl") });
    const app = createBackendApp(model, { secret: TEST_BACKEND_SECRET, lens: jobs });
    // A probe over the held-out split, whose file is missing here: the job fails.
    const res = await app.request(`${LENS_PATH}/jobs`, {
      method: "POST",
      headers: { ...AUTH, "content-type": "application/json" },
      body: JSON.stringify({ kind: "probe", languages: ["en", "sw"], layers: [0], per_language: 2 }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const record = await jobs.wait(id);
    expect(record.state).toBe("failed");
    const got = await app.request(`${LENS_PATH}/jobs/${id}`, { headers: AUTH });
    const text = await got.text();
    for (const marker of ["    at ", "node_modules", "Error:"])
      expect(text.includes(marker), `${marker} in ${text}`).toBe(false);
    expect(text).not.toContain(TEST_BACKEND_SECRET);
  });
});
