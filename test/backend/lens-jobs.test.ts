/**
 * Lens jobs through the internal HTTP routes: probe -> artifact, subspace and train deltas (loaded
 * into the delta store), cancelling queued and running jobs, a restart that finds a job cut off mid-run,
 * and requests with bad ids or bodies, which must be refused without touching the file system.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackendApp } from "../../src/gpu-backend/app.js";
import { JOB_FILE } from "../../src/gpu-backend/lens/jobs/records.js";
import { LensJobRunner } from "../../src/gpu-backend/lens/jobs/runner.js";
import { decodeProbe } from "../../src/gpu-backend/lens/probe/probe.js";
import { loadModel, type LoadedModel } from "../../src/gpu-backend/load.js";
import { validateDelta } from "../../src/protocol/delta.js";
import { LENS_PATH, LensJobRecord } from "../../src/protocol/lens-jobs.js";
import { lensPromptsSkip } from "./lens-prompts.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

const embedded = MODEL_CASES[0]!;
const skip = embedded.skip ?? lensPromptsSkip;
const SESSION_OPTIONS = { intraOpNumThreads: 1, interOpNumThreads: 1 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every path under `dir`, relative, sorted (folders end in /). */
function tree(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(`${prefix}${e.name}/`, ...tree(join(dir, e.name), `${prefix}${e.name}/`));
    else out.push(`${prefix}${e.name}`);
  }
  return out.sort();
}

describe.skipIf(skip !== null)("Lens jobs through the routes, on the embedded model", () => {
  let root: string;
  let jobsDir: string;
  let model: LoadedModel;
  let app: Hono;
  let runner: LensJobRunner;
  let probeJob: LensJobRecord;
  let trainJob: LensJobRecord;

  const req = (path: string, init?: RequestInit) => app.request(`${LENS_PATH}${path}`, init);
  const post = (body: unknown) =>
    req("/jobs", {
      method: "POST",
      body: typeof body === "string" ? body : JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
  const getJob = async (id: string) => LensJobRecord.parse(await (await req(`/jobs/${id}`)).json());
  const submit = async (body: unknown): Promise<string> => {
    const res = await post(body);
    const json = (await res.json()) as { id: string; error?: unknown };
    expect(res.status, JSON.stringify(json)).toBe(202);
    return json.id;
  };
  /** Polls GET /jobs/:id until the job is finished. */
  const settle = async (id: string, timeoutMs = 60_000): Promise<LensJobRecord> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await getJob(id);
      if (r.state === "succeeded" || r.state === "failed" || r.state === "cancelled") return r;
      if (Date.now() > end) throw new Error(`job ${id} still ${r.state}`);
      await sleep(10);
    }
  };
  const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lens-jobs-"));
    jobsDir = join(root, "jobs");
    model = await loadModel(embedded.dir, { executionProvider: "cpu", maxBatch: 1, maxQueue: 2 });
    runner = new LensJobRunner(model, { dir: jobsDir, sessionOptions: SESSION_OPTIONS });
    app = createBackendApp(model, { lens: runner });
  });
  afterAll(async () => {
    await runner?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("runs a probe job on a few prompts to success and serves its artifact", async () => {
    const id = await submit({
      kind: "probe",
      languages: ["en", "es", "zh"],
      layers: [2, 3],
      prompts: "probe",
      per_language: 8,
    });
    expect(id).toMatch(/^job-[0-9a-z]+-[0-9a-f]{8}$/);
    probeJob = await settle(id);
    expect(probeJob.state, JSON.stringify(probeJob.error)).toBe("succeeded");
    expect(probeJob.progress).toMatchObject({ done: 3, total: 3 });
    expect(probeJob.result).toMatchObject({ prompts_per_language: { en: 8, es: 8, zh: 8 }, layers: [2, 3] });
    const a = probeJob.artifact!;
    expect(a.kind).toBe("probe");

    const res = await req(`/jobs/${id}/artifact`);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-lens-artifact-id")).toBe(a.id);
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(bytes.byteLength).toBe(a.bytes);
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(a.sha256);
    const manifest = await (await req(`/jobs/${id}/artifact?part=manifest`)).json();
    const p = decodeProbe(bytes, manifest);
    expect(p.id).toBe(a.id);
    expect(p.baseModel.fingerprint).toBe(model.fingerprint);
    expect(p.layers.map((l) => l.rank)).toEqual([2, 2]);
    // The record on disk says the same; no temporary files are left.
    expect(tree(join(jobsDir, id))).toEqual([`${a.id}.json`, `${a.id}.safetensors`, JOB_FILE].sort());
    expect(LensJobRecord.parse(JSON.parse(readFileSync(join(jobsDir, id, JOB_FILE), "utf8"))).state).toBe("succeeded");
    expect((await req(`/jobs/${id}/artifact?part=weights`)).status).toBe(400);
  });

  it("makes a subspace delta from the probe job and loads it into the delta store", async () => {
    const id = await submit({
      kind: "subspace",
      probe: probeJob.id,
      language: "es",
      layers: [3],
      lambda: 1,
      alpha: 0.5,
      load: true,
    });
    const r = await settle(id);
    expect(r.state, JSON.stringify(r.error)).toBe("succeeded");
    expect(r.result).toMatchObject({ loaded: true, language: "es", layers: [3] });
    expect(model.deltas.has(r.artifact!.id)).toBe(true);
    expect(model.deltas.manifest(r.artifact!.id)).toMatchObject({
      kind: "subspace",
      method: { probe: probeJob.artifact!.id },
    });
  });

  it("trains an adapter from the probe (named by its probe id), reports step progress and serves a valid delta", async () => {
    const id = await submit({
      kind: "train",
      probe: probeJob.artifact!.id,
      language: "es",
      rank: 2,
      steps: 20,
      per_language: 12,
      seed: 3,
      load: true,
    });
    const r = await settle(id);
    expect(r.state, JSON.stringify(r.error)).toBe("succeeded");
    expect(r.progress).toMatchObject({ stage: "done", done: 20, total: 20 });
    expect(r.progress!.losses!.total).toBeGreaterThan(0);
    expect(r.result).toMatchObject({ loaded: true, prompts: 12, layer: 3 });
    expect(r.result!["loss_final"] as number).toBeLessThan(r.result!["loss_initial"] as number);
    const bytes = new Uint8Array(await (await req(`/jobs/${id}/artifact`)).arrayBuffer());
    const manifest = await (await req(`/jobs/${id}/artifact?part=manifest`)).json();
    const checked = validateDelta(bytes, manifest, {
      fingerprint: model.fingerprint,
      hiddenSize: model.info.hiddenSize,
      numLayers: model.info.numLayers,
      maxBytes: 1 << 24,
    });
    expect(checked.ok).toBe(true);
    expect(manifest).toMatchObject({
      kind: "adapter",
      language: "es",
      rank: 2,
      method: { steps: 20, seed: 3, probe: probeJob.artifact!.id },
    });
    expect(model.deltas.has(r.artifact!.id)).toBe(true);
    trainJob = r;
  });

  it("evaluates the trained delta on held-out prompts; the report is the artifact", async () => {
    const id = await submit({ kind: "eval", delta: trainJob.id, per_language: 3, max_tokens: 6 });
    const r = await settle(id);
    expect(r.state, JSON.stringify(r.error)).toBe("succeeded");
    expect(r.artifact).toMatchObject({ kind: "report", id, tensors: null });
    expect(r.result).toMatchObject({ delta_id: trainJob.artifact!.id, language: "es", prompts: 3 });
    const res = await req(`/jobs/${id}/artifact`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/json/);
    const report = (await res.json()) as {
      delta_id: string;
      evaluation: {
        language: string;
        base: { fidelity: { prompts: number }; alignment: { layer: number } | null };
        deltas: Record<string, { id: string; drift: { klLast: number } }>;
      };
    };
    expect(report.delta_id).toBe(trainJob.artifact!.id);
    expect(report.evaluation.language).toBe("es");
    expect(report.evaluation.base.fidelity.prompts).toBe(3);
    // The delta's probe is held here, so the alignment figures are in, at the edited layer.
    expect(report.evaluation.base.alignment?.layer).toBe(3);
    expect(report.evaluation.deltas["delta"]!.id).toBe(trainJob.artifact!.id);
    expect(report.evaluation.deltas["delta"]!.drift.klLast).toBeGreaterThanOrEqual(0);
    // A probe is not a delta.
    const bad = await post({ kind: "eval", delta: probeJob.id });
    expect(bad.status).toBe(404);
  }, 120_000);

  it("cancels a running train job: it ends cancelled with no artifact and no files but its record", async () => {
    const id = await submit({
      kind: "train",
      probe: probeJob.id,
      language: "zh",
      rank: 2,
      steps: 4000,
      per_language: 150,
    });
    let seen = (await getJob(id)).state;
    for (let i = 0; seen === "queued" && i < 2000; i++) {
      await sleep(2);
      seen = (await getJob(id)).state;
    }
    expect(seen).toBe("running");
    const del = await req(`/jobs/${id}`, { method: "DELETE" });
    expect(del.status).toBe(202);
    const r = await settle(id);
    expect(r.state).toBe("cancelled");
    expect(r.artifact).toBeNull();
    expect(tree(join(jobsDir, id))).toEqual([JOB_FILE]);
    expect((await errorOf(await req(`/jobs/${id}/artifact`))).code).toBe("not_found");
    // Cancelling a finished job is a conflict.
    const again = await req(`/jobs/${id}`, { method: "DELETE" });
    expect(again.status).toBe(409);
    expect((await errorOf(again)).code).toBe("conflict");
  });

  it("cancels a queued job at once, behind a running one", async () => {
    const first = await submit({
      kind: "train",
      probe: probeJob.id,
      language: "zh",
      rank: 2,
      steps: 4000,
      per_language: 150,
    });
    const second = await submit({ kind: "probe", languages: ["en", "es"], layers: [3], per_language: 4 });
    expect((await getJob(second)).state).toBe("queued");
    const res = await req(`/jobs/${second}`, { method: "DELETE" });
    expect(res.status).toBe(202);
    expect(((await res.json()) as LensJobRecord).state).toBe("cancelled");
    expect((await getJob(second)).error?.message).toMatch(/queued/);
    await req(`/jobs/${first}`, { method: "DELETE" });
    expect((await settle(first)).state).toBe("cancelled");
    expect((await settle(second)).state).toBe("cancelled");
    const listed = ((await (await req("/jobs")).json()) as { jobs: LensJobRecord[] }).jobs.map((j) => j.id);
    expect(listed.slice(0, 2)).toEqual([second, first]);
  });

  it("after a restart, a job found running is failed and its partial files removed; finished jobs keep their artifacts", async () => {
    const crashedId = "job-zzzzzz-0badc0de";
    const crashedDir = join(jobsDir, crashedId);
    mkdirSync(crashedDir);
    const running: LensJobRecord = {
      ...probeJob,
      id: crashedId,
      state: "running",
      finished_at: null,
      artifact: null,
      result: null,
      error: null,
      progress: { stage: "collecting", done: 1, total: 3 },
    };
    writeFileSync(join(crashedDir, JOB_FILE), JSON.stringify(running));
    writeFileSync(join(crashedDir, "probe-half.safetensors"), new Uint8Array(100));
    writeFileSync(join(crashedDir, `probe-half.json.tmp-1-2-abc`), "{");
    // A job still queued when the process stopped: it runs after the restart.
    const queuedId = "job-zzzzzz-0000abcd";
    mkdirSync(join(jobsDir, queuedId));
    const queuedRequest = {
      kind: "probe",
      languages: ["en", "es"],
      layers: [3],
      prompts: "probe",
      per_language: 2,
      central: "en",
    };
    writeFileSync(
      join(jobsDir, queuedId, JOB_FILE),
      JSON.stringify({
        ...running,
        id: queuedId,
        state: "queued",
        started_at: null,
        progress: null,
        request: queuedRequest,
      }),
    );
    // A folder cut off before its first record, and a folder that is not a job's (left alone).
    mkdirSync(join(jobsDir, "job-zzzzzz-00000001"));
    mkdirSync(join(jobsDir, "not-a-job"));

    const runner2 = new LensJobRunner(model, { dir: jobsDir, sessionOptions: SESSION_OPTIONS });
    const app2 = createBackendApp(model, { lens: runner2 });
    try {
      const res = await app2.request(`${LENS_PATH}/jobs/${crashedId}`);
      const r = LensJobRecord.parse(await res.json());
      expect(r.state).toBe("failed");
      expect(r.error?.message).toBe("interrupted by a restart");
      expect(r.finished_at).not.toBeNull();
      expect(tree(crashedDir)).toEqual([JOB_FILE]);
      expect(LensJobRecord.parse(JSON.parse(readFileSync(join(crashedDir, JOB_FILE), "utf8"))).state).toBe("failed");
      expect(existsSync(join(jobsDir, "job-zzzzzz-00000001"))).toBe(false);
      expect(existsSync(join(jobsDir, "not-a-job"))).toBe(true);
      // The probe from before the restart is still there and still serves.
      const art = await app2.request(`${LENS_PATH}/jobs/${probeJob.id}/artifact`);
      expect(art.status).toBe(200);
      expect(
        createHash("sha256")
          .update(new Uint8Array(await art.arrayBuffer()))
          .digest("hex"),
      ).toBe(probeJob.artifact!.sha256);
      const requeued = await runner2.wait(queuedId);
      expect(requeued.state, JSON.stringify(requeued.error)).toBe("succeeded");
      expect(requeued.result).toMatchObject({ prompts_per_language: { en: 2, es: 2 } });
      // A failed probe cannot feed a train job.
      const bad = await app2.request(`${LENS_PATH}/jobs`, {
        method: "POST",
        body: JSON.stringify({ kind: "train", probe: crashedId, language: "es" }),
        headers: { "content-type": "application/json" },
      });
      expect(bad.status).toBe(409);
    } finally {
      await runner2.close();
    }
  });

  it("refuses bad and path-like ids with 400 and touches nothing", async () => {
    const sentinel = join(root, "x");
    writeFileSync(sentinel, "keep");
    const before = tree(root);
    for (const id of ["%2E%2E%2Fx", "..%2Fx", "a%2Fb", "job-..", "JOB-zzzzzz-00000000", "job-zzzzzz-0000000g"]) {
      for (const [method, suffix] of [
        ["GET", ""],
        ["DELETE", ""],
        ["GET", "/artifact"],
      ] as const) {
        const res = await req(`/jobs/${id}${suffix}`, { method });
        expect(res.status, `${method} ${id}${suffix}`).toBe(400);
        expect((await errorOf(res)).code).toBe("invalid_request");
      }
    }
    const nested = await req(`/jobs/a/b`);
    expect(nested.status).toBe(400);
    // A well-formed id that is not a job.
    expect((await req(`/jobs/job-zzzzzz-00000000`)).status).toBe(404);
    expect((await req(`/jobs/job-zzzzzz-00000000`, { method: "DELETE" })).status).toBe(404);
    // Path-like references inside bodies.
    for (const probe of ["../x", "a/b", "/etc/passwd", ""]) {
      const res = await post({ kind: "train", probe, language: "es" });
      expect(res.status, probe).toBe(400);
    }
    expect(runner.get("../x")).toBeUndefined();
    expect(tree(root)).toEqual(before);
    expect(readFileSync(sentinel, "utf8")).toBe("keep");
  });

  it("refuses invalid bodies with a clear error", async () => {
    const cases: Array<[unknown, number, RegExp]> = [
      ["{", 400, /not JSON/],
      [{ kind: "finetune" }, 400, /kind/],
      [{ kind: "probe", layers: [3] }, 400, /languages/],
      [{ kind: "probe", languages: ["en", "es"], layers: [9] }, 400, /out of range/],
      [{ kind: "probe", languages: ["en", "xx"], layers: [3] }, 400, /languages\.1/],
      [{ kind: "probe", languages: ["es", "zh"], layers: [3] }, 400, /central/],
      [{ kind: "probe", languages: ["en", "es"], layers: [3], extra: 1 }, 400, /extra/],
      [{ kind: "probe", languages: ["en", "es"], layers: [3], prompts: { en: ["a"] } }, 400, /every language/],
      [{ kind: "train", probe: probeJob.id, language: "es", steps: -1 }, 400, /steps/],
      [{ kind: "train", probe: "job-zzzzzz-00000000", language: "es" }, 404, /no probe/],
      [{ kind: "subspace", probe: probeJob.id, language: "es", layers: [3], lambda: "1", alpha: 0 }, 400, /lambda/],
    ];
    const before = readdirSync(jobsDir).length;
    for (const [body, status, message] of cases) {
      const res = await post(body);
      const e = await errorOf(res);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(e.message, JSON.stringify(body)).toMatch(message);
    }
    // Refused requests made no job folders.
    expect(readdirSync(jobsDir).length).toBe(before);
  });

  it("refuses eval jobs with 501 where no evaluator is set up", async () => {
    const dir = join(root, "no-eval");
    const runner3 = new LensJobRunner(model, { dir, evaluate: null });
    const app3 = createBackendApp(model, { lens: runner3 });
    try {
      const res = await app3.request(`${LENS_PATH}/jobs`, {
        method: "POST",
        body: JSON.stringify({ kind: "eval", delta: trainJob.id }),
        headers: { "content-type": "application/json" },
      });
      expect(res.status).toBe(501);
      const e = await errorOf(res);
      expect(e.code).toBe("not_available");
      expect(e.message).toMatch(/not available/);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      await runner3.close();
    }
  });
});
