/**
 * Lens jobs on the backend: probe, train, subspace and eval, one at a time, each with an id, a state
 * (queued -> running -> succeeded | failed | cancelled), progress, cancelling through an AbortSignal,
 * and a record plus artifacts on disk that outlive the process (records.ts, artifacts.ts). This file is
 * the queue and the state machine; each kind's work is in its own module (probe-job.ts, train-job.ts,
 * subspace-job.ts, eval-job.ts).
 *
 * Ids: job ids are made here (JOB_ID_PATTERN). Any id from a request is checked against a strict pattern
 * (JobId / DeltaId) and then looked up among the jobs held in memory; file names are only ever built
 * from ids this runner wrote, and checked again (files.ts) before being joined onto a folder.
 *
 * Cancelling: a queued job is cancelled at once. A running job's signal is aborted; the probe checks it
 * between languages, training between batches of prompts while reading states and at each step. The
 * training steps run synchronously on the event loop, so a cancel that arrives during them is seen when
 * they end; the job then still ends "cancelled" and writes nothing.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import type * as ort from "onnxruntime-node";
import { DeltaId } from "../../../protocol/delta.js";
import {
  JobId,
  type LensJobRecord,
  LensJobRequest,
  TERMINAL_STATES,
  type LensJobArtifact,
  type LensJobProgress,
} from "../../../protocol/lens-jobs.js";
import { loadProbe, type LensProbe } from "../probe/probe.js";
import { artifactFile, readDeltaArtifact, writeArtifact, type ArtifactPart } from "./artifacts.js";
import { evalWork, lensEvaluator, type EvaluateFn } from "./eval-job.js";
import { DEFAULT_PROMPTS_FILE } from "./prompts.js";
import { probeWork } from "./probe-job.js";
import { defaultJobsDir, jobDir, nowIso, recoverJobs, removePartial, writeRecord } from "./records.js";
import { subspaceWork } from "./subspace-job.js";
import { trainWork } from "./train-job.js";
import { LensJobError, ms, type JobContext, type JobModel, type WorkOutput } from "./work.js";

export interface LensJobRunnerOptions {
  /** The jobs folder (default: defaultJobsDir()). */
  dir?: string;
  /** The held-out prompts (default data/lens-prompts/prompts.jsonl). */
  promptsFile?: string;
  /** For the inference sessions jobs open (default: one thread, so jobs leave the generator room). */
  sessionOptions?: ort.InferenceSession.SessionOptions;
  /** Prompts per forward pass (default: the collector's). */
  batchSize?: number;
  /**
   * Evaluates eval jobs' deltas (default: lensEvaluator() where the model has a generation engine).
   * Eval jobs are refused ("not_available") without one; null refuses them on any model.
   */
  evaluate?: EvaluateFn | null;
  /** Where job events are reported (default: nowhere). */
  log?: (line: string) => void;
}

const DEFAULT_SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
};

interface Job {
  /** Order of arrival in this process (ties of created_at, which has millisecond resolution). */
  seq: number;
  record: LensJobRecord;
  request: LensJobRequest;
  controller?: AbortController;
}

/** The job kinds whose artifact is a delta. */
const DELTA_KINDS: readonly string[] = ["train", "subspace"];

const newJobId = () => `job-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
const toJson = (x: unknown) => JSON.parse(JSON.stringify(x)) as Record<string, never>;

export class LensJobRunner {
  readonly dir: string;
  readonly promptsFile: string;
  private readonly jobs = new Map<string, Job>();
  private readonly queue: string[] = [];
  private current: Promise<void> | null = null;
  private readonly waiters = new Map<string, Array<(r: LensJobRecord) => void>>();
  private closed = false;
  private seq = 0;
  private readonly sessionOptions: ort.InferenceSession.SessionOptions;
  private readonly evaluate: EvaluateFn | null;

  constructor(
    readonly model: JobModel,
    private readonly options: LensJobRunnerOptions = {},
  ) {
    this.dir = resolve(options.dir ?? defaultJobsDir());
    this.promptsFile = options.promptsFile ?? DEFAULT_PROMPTS_FILE;
    this.sessionOptions = options.sessionOptions ?? DEFAULT_SESSION_OPTIONS;
    // Eval jobs generate through the engine: on by default where the model has one.
    this.evaluate = options.evaluate === undefined ? (model.engine ? lensEvaluator() : null) : options.evaluate;
    mkdirSync(this.dir, { recursive: true });
    for (const { record, request } of recoverJobs(this.dir, (line) => this.log(line))) {
      this.jobs.set(record.id, { seq: this.seq++, record, request });
      if (record.state === "queued") this.queue.push(record.id);
    }
    queueMicrotask(() => this.pump());
  }

  get evalAvailable(): boolean {
    return typeof this.evaluate === "function";
  }

  // ------------------------------------------------------------------------------------------------
  // Public API

  /** Validates and queues a job (a subspace job runs at once: it is a few matrix products). */
  submit(input: unknown): LensJobRecord {
    if (this.closed) throw new LensJobError("not_available", "the job runner is closed");
    const parsed = LensJobRequest.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
      throw new LensJobError("invalid_request", `${where}${issue?.message ?? "invalid job request"}`);
    }
    const request = parsed.data;
    this.check(request);
    const id = newJobId();
    const record: LensJobRecord = {
      id,
      kind: request.kind,
      state: "queued",
      request: toJson(request),
      created_at: nowIso(),
      started_at: null,
      finished_at: null,
      progress: null,
      error: null,
      artifact: null,
      result: null,
    };
    const job: Job = { seq: this.seq++, record, request };
    mkdirSync(jobDir(this.dir, id), { recursive: true });
    this.jobs.set(id, job);
    writeRecord(this.dir, record);
    this.log(`${id} ${request.kind} queued`);
    if (request.kind === "subspace") {
      // Inline: the work is synchronous and short, so it does not wait behind a long job.
      this.execute(job).catch((err: unknown) => this.log(`${id}: ${(err as Error).message}`));
    } else {
      this.queue.push(id);
      queueMicrotask(() => this.pump());
    }
    return this.get(id)!;
  }

  /** A copy of the job's record, or undefined (also for ids that are not job ids). */
  get(id: string): LensJobRecord | undefined {
    if (!JobId.safeParse(id).success) return undefined;
    const job = this.jobs.get(id);
    return job && structuredClone(job.record);
  }

  /** Every job, newest first. */
  list(): LensJobRecord[] {
    return [...this.jobs.values()]
      .sort((a, b) =>
        a.record.created_at < b.record.created_at ? 1 : a.record.created_at > b.record.created_at ? -1 : b.seq - a.seq,
      )
      .map((j) => structuredClone(j.record));
  }

  /**
   * Cancels a queued or running job. A queued job is cancelled now; a running one when its work next
   * checks the signal (see the file comment). Throws not_found / conflict (already finished).
   */
  cancel(id: string): LensJobRecord {
    const job = this.require(id);
    const { state } = job.record;
    if (TERMINAL_STATES.includes(state)) throw new LensJobError("conflict", `job ${id} has already ${state}`);
    if (state === "queued") {
      const at = this.queue.indexOf(id);
      if (at >= 0) this.queue.splice(at, 1);
      this.finish(job, "cancelled", { message: "cancelled while queued" });
    } else {
      job.controller?.abort(new LensJobError("conflict", "cancelled"));
      this.log(`${id} cancel requested`);
    }
    return structuredClone(job.record);
  }

  /** Resolves with the record once the job is finished (at once when it is). */
  wait(id: string): Promise<LensJobRecord> {
    const job = this.require(id);
    if (TERMINAL_STATES.includes(job.record.state)) return Promise.resolve(structuredClone(job.record));
    return new Promise((res) => {
      const list = this.waiters.get(id) ?? [];
      list.push(res);
      this.waiters.set(id, list);
    });
  }

  /** The path of a finished job's artifact file. Throws not_found when there is none. */
  artifactPath(id: string, part: ArtifactPart = "tensors"): { path: string; name: string; artifact: LensJobArtifact } {
    const job = this.require(id);
    return artifactFile(jobDir(this.dir, id), job.record, part);
  }

  /** Stops taking jobs, cancels the running one and waits for it. Queued jobs stay queued on disk. */
  async close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    for (const job of this.jobs.values())
      if (job.record.state === "running")
        job.controller?.abort(new LensJobError("conflict", "cancelled: the runner closed"));
    await this.current;
  }

  // ------------------------------------------------------------------------------------------------
  // Checks at submission (so a bad request fails with 4xx, not as a failed job)

  private check(r: LensJobRequest): void {
    const { info } = this.model;
    const badLayers = (layers: number[]) => layers.filter((l) => l >= info.numLayers);
    if (r.kind === "probe") {
      const bad = badLayers(r.layers);
      if (bad.length > 0)
        throw new LensJobError(
          "invalid_request",
          `layers ${bad.join(", ")} are out of range: the model has layers 0..${info.numLayers - 1}`,
        );
      if (r.rank !== undefined && r.rank > r.languages.length - 1)
        throw new LensJobError("invalid_request", `rank ${r.rank} is over L - 1 = ${r.languages.length - 1}`);
    } else if (r.kind === "subspace") {
      const bad = badLayers(r.layers);
      if (bad.length > 0)
        throw new LensJobError(
          "invalid_request",
          `layers ${bad.join(", ")} are out of range: the model has layers 0..${info.numLayers - 1}`,
        );
      this.source(r.probe, ["probe"], true);
    } else if (r.kind === "train") {
      if (r.rank > info.hiddenSize)
        throw new LensJobError("invalid_request", `rank ${r.rank} exceeds the hidden size ${info.hiddenSize}`);
      this.source(r.probe, ["probe"], false);
    } else {
      if (!this.evalAvailable)
        throw new LensJobError(
          "not_available",
          "eval jobs are not available on this backend yet (no evaluator is built in)",
        );
      this.source(r.delta, DELTA_KINDS, false);
    }
  }

  /** The job a reference names (its job id, or the id of the artifact it made), of one of `kinds`. */
  private source(ref: string, kinds: readonly string[], mustBeDone: boolean): Job {
    const what = kinds.join(" or ");
    let job: Job | undefined;
    if (JobId.safeParse(ref).success) job = this.jobs.get(ref);
    else if (DeltaId.safeParse(ref).success) {
      job = [...this.jobs.values()].find(
        (j) => j.record.state === "succeeded" && j.record.artifact?.id === ref && kinds.includes(j.record.kind),
      );
    } else throw new LensJobError("invalid_request", `invalid reference ${JSON.stringify(ref)}`);
    if (!job || !kinds.includes(job.record.kind))
      throw new LensJobError("not_found", `no ${what} job or artifact "${ref}"`);
    const { state } = job.record;
    if (state === "failed" || state === "cancelled")
      throw new LensJobError("conflict", `${what} job ${job.record.id} ${state}`);
    if (mustBeDone && state !== "succeeded")
      throw new LensJobError("conflict", `${what} job ${job.record.id} has not finished (it is ${state})`);
    return job;
  }

  private loadProbeOf(job: Job): LensProbe {
    return loadProbe(jobDir(this.dir, job.record.id), job.record.artifact!.id);
  }

  // ------------------------------------------------------------------------------------------------
  // Running

  private pump(): void {
    if (this.current !== null || this.closed) return;
    const id = this.queue.shift();
    if (id === undefined) return;
    const job = this.jobs.get(id);
    if (job?.record.state !== "queued") return this.pump();
    this.current = this.execute(job)
      .catch((err: unknown) => this.log(`${id}: ${(err as Error).message}`))
      .finally(() => {
        this.current = null;
        this.pump();
      });
  }

  private async execute(job: Job): Promise<void> {
    const controller = new AbortController();
    job.controller = controller;
    const { signal } = controller;
    job.record.state = "running";
    job.record.started_at = nowIso();
    writeRecord(this.dir, job.record);
    this.log(`${job.record.id} ${job.record.kind} running`);
    try {
      const out = await this.work(job, signal);
      // A cancel that arrived while synchronous work ran is honoured here: nothing is written.
      signal.throwIfAborted();
      job.record.progress = { ...(job.record.progress ?? { done: 0, total: 0 }), stage: "writing" };
      const w0 = performance.now();
      const artifact = writeArtifact(jobDir(this.dir, job.record.id), out.artifact);
      const timings = {
        ...(out.result["timings_ms"] as Record<string, number> | undefined),
        write: ms(performance.now() - w0),
      };
      job.record.artifact = artifact;
      job.record.result = toJson({ ...out.result, ...(out.after ? out.after() : {}), timings_ms: timings });
      this.finish(job, "succeeded", null);
    } catch (err) {
      removePartial(this.dir, job.record.id);
      job.record.artifact = null;
      if (signal.aborted)
        this.finish(job, "cancelled", {
          message: signal.reason instanceof LensJobError ? signal.reason.message : "cancelled",
        });
      else this.finish(job, "failed", { message: (err as Error)?.message ?? String(err) });
    } finally {
      delete job.controller;
    }
  }

  private finish(job: Job, state: "succeeded" | "failed" | "cancelled", error: { message: string } | null): void {
    job.record.state = state;
    job.record.error = error;
    job.record.finished_at = nowIso();
    if (state === "succeeded" && job.record.progress) job.record.progress = { ...job.record.progress, stage: "done" };
    writeRecord(this.dir, job.record);
    this.log(`${job.record.id} ${state}${error ? `: ${error.message}` : ""}`);
    const list = this.waiters.get(job.record.id);
    this.waiters.delete(job.record.id);
    for (const w of list ?? []) w(structuredClone(job.record));
  }

  private work(job: Job, signal: AbortSignal): Promise<WorkOutput> {
    const ctx = this.context(job, signal);
    const r = job.request;
    switch (r.kind) {
      case "probe":
        return probeWork(ctx, r);
      case "train":
        return trainWork(ctx, r);
      case "subspace":
        return Promise.resolve().then(() => subspaceWork(ctx, r));
      case "eval":
        return evalWork(ctx, r, this.evaluate);
    }
  }

  private context(job: Job, signal: AbortSignal): JobContext {
    return {
      jobId: job.record.id,
      model: this.model,
      promptsFile: this.promptsFile,
      sessionOptions: this.sessionOptions,
      batchSize: this.options.batchSize,
      signal,
      progress: (p: LensJobProgress) => {
        job.record.progress = p;
      },
      probe: (ref) => this.loadProbeOf(this.source(ref, ["probe"], true)),
      heldProbe: (id) => {
        const probeJob =
          typeof id === "string" && DeltaId.safeParse(id).success
            ? [...this.jobs.values()].find(
                (j) => j.record.kind === "probe" && j.record.state === "succeeded" && j.record.artifact?.id === id,
              )
            : undefined;
        return probeJob ? this.loadProbeOf(probeJob) : null;
      },
      delta: (ref) => {
        const source = this.source(ref, DELTA_KINDS, true);
        return readDeltaArtifact(jobDir(this.dir, source.record.id), source.record);
      },
    };
  }

  private require(id: string): Job {
    if (!JobId.safeParse(id).success) throw new LensJobError("invalid_request", `invalid job id ${JSON.stringify(id)}`);
    const job = this.jobs.get(id);
    if (!job) throw new LensJobError("not_found", `no job ${id}`);
    return job;
  }

  private log(line: string): void {
    this.options.log?.(line);
  }
}
