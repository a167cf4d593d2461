/**
 * Fault matrix row 7 (docs/faults.md): a Lens training job killed mid-run. A real backend process
 * (server.ts) runs a probe, then a long train job; the process is SIGKILLed while the job runs and
 * restarted on the same LENS_JOBS_DIR. The job must then read "failed" and leave no artifact file
 * (nor temporary file) behind, while the finished probe keeps its artifact.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JOB_FILE } from "../../src/gpu-backend/lens/jobs/records.js";
import { LENS_PATH, LensJobRecord } from "../../src/protocol/lens-jobs.js";
import { type BackendProcess, startBackendProcess, until } from "../support/fault-processes.js";
import { lensPromptsSkip } from "./lens-prompts.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

const skip = MODEL_CASES[0]!.skip ?? lensPromptsSkip;

describe.skipIf(skip !== null)("fault 7: a Lens training job killed mid-run", () => {
  let root: string;
  let jobsDir: string;
  let backend: BackendProcess | undefined;

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "lens-job-faults-"));
    jobsDir = join(root, "jobs");
  });
  afterAll(async () => {
    await backend?.kill();
    rmSync(root, { recursive: true, force: true });
  });

  const job = async (id: string) => {
    const res = await backend!.fetch(`${LENS_PATH}/jobs/${id}`);
    expect(res.status).toBe(200);
    return LensJobRecord.parse(await res.json());
  };
  const submit = async (body: unknown) => {
    const res = await backend!.fetch(`${LENS_PATH}/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as { id: string };
    expect(res.status, JSON.stringify(json)).toBe(202);
    return json.id;
  };

  it("reads failed after the restart, with no partial artifact; the finished probe keeps its files", {
    timeout: 180_000,
  }, async () => {
    backend = await startBackendProcess({ jobsDir });
    const probeId = await submit({
      kind: "probe",
      languages: ["en", "es", "fr"],
      layers: [3],
      prompts: "probe",
      per_language: 6,
    });
    const probe = await until(
      async () => {
        const r = await job(probeId);
        return r.state === "queued" || r.state === "running" ? undefined : r;
      },
      120_000,
      "probe finished",
    );
    expect(probe.state, JSON.stringify(probe.error)).toBe("succeeded");
    const probeFiles = readdirSync(join(jobsDir, probeId)).sort();

    // Far more steps than can finish before the kill: the job is surely mid-run when it comes.
    const trainId = await submit({
      kind: "train",
      probe: probeId,
      language: "es",
      rank: 2,
      steps: 100_000,
      per_language: 6,
      seed: 1,
    });
    const running = await until(
      async () => {
        const r = await job(trainId);
        return r.state === "running" && r.progress?.stage === "fitting" && r.progress.done > 0 ? r : undefined;
      },
      120_000,
      "train job fitting",
    );
    expect(running.finished_at).toBeNull();
    await backend.kill();

    // Cut off: the record on disk still says running (nothing could mark it).
    backend = await startBackendProcess({ jobsDir });
    const after = await job(trainId);
    expect(after).toMatchObject({ state: "failed", artifact: null, error: { message: "interrupted by a restart" } });
    expect(after.finished_at).not.toBeNull();
    expect(readdirSync(join(jobsDir, trainId))).toEqual([JOB_FILE]);
    const artifact = await backend.fetch(`${LENS_PATH}/jobs/${trainId}/artifact`);
    expect(artifact.status).toBe(404);
    await artifact.arrayBuffer();
    // A failed job stays failed and cannot be cancelled any more.
    const cancel = await backend.fetch(`${LENS_PATH}/jobs/${trainId}`, { method: "DELETE" });
    expect(cancel.status).toBe(409);
    await cancel.arrayBuffer();

    // The probe that finished before the kill is untouched and still serves its artifact.
    expect(await job(probeId)).toMatchObject({ state: "succeeded", artifact: probe.artifact });
    expect(readdirSync(join(jobsDir, probeId)).sort()).toEqual(probeFiles);
    const probeArtifact = await backend.fetch(`${LENS_PATH}/jobs/${probeId}/artifact`);
    expect(probeArtifact.status).toBe(200);
    expect((await probeArtifact.arrayBuffer()).byteLength).toBe(probe.artifact!.bytes);
    await backend.stop();
    backend = undefined;
  });
});
