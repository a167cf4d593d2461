/**
 * Lens jobs on the backend: probe, train, subspace and eval, one at a time, each with an id, a state
 * (queued -> running -> succeeded | failed | cancelled), progress, cancelling through an AbortSignal,
 * and a record plus artifacts on disk that outlive the process.
 *
 * On disk, under the jobs folder (LENS_JOBS_DIR, default `.lens/jobs` in the repository, else in the
 * working directory):
 *   <job id>/job.json                  the record (LensJobRecord), rewritten at each change of state
 *   <job id>/<artifact id>.safetensors the probe or delta tensors
 *   <job id>/<artifact id>.json        its manifest (an eval job writes only this: its report)
 * Every file is written atomically (temporary file in the same folder, fsync, rename). Artifacts are
 * written before the record that names them, so a record that says "succeeded" has its files.
 *
 * On start: a job found "running" was cut off by a crash or a restart; it becomes "failed"
 * ("interrupted by a restart") and every file in its folder but the record is removed. Jobs found
 * "queued" are queued again. Temporary files left anywhere are removed.
 *
 * Ids: job ids are made here (JOB_ID_PATTERN). Any id from a request is checked against a strict pattern
 * (JobId / DeltaId) and then looked up among the jobs held in memory; file names are only ever built
 * from ids this runner wrote, and checked again (jobs-fs.ts) before being joined onto a folder.
 *
 * Cancelling: a queued job is cancelled at once. A running job's signal is aborted; the probe checks it
 * between languages, training between batches of prompts while reading states and at each step. The
 * training steps run synchronously on the event loop, so a cancel that arrives during them is seen when
 * they end; the job then still ends "cancelled" and writes nothing.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type * as ort from "onnxruntime-node";
import { DeltaId } from "../../protocol/delta.js";
import {
  JobId,
  LensJobRecord,
  LensJobRequest,
  TERMINAL_STATES,
  type EvalJobRequest,
  type LensJobArtifact,
  type LensJobErrorCode,
  type LensJobProgress,
  type ProbeJobRequest,
  type SubspaceJobRequest,
  type TrainJobRequest,
} from "../../protocol/lens-jobs.js";
import type { PutResult } from "../deltas/store.js";
import type { Engine } from "../generation/engine.js";
import type { ChatTokenizer } from "../model/chat-tokenizer.js";
import type { ModelInfo } from "../model/model-dir.js";
import { adapterDelta } from "./adapter-delta.js";
import { HiddenStateCollector, type CollectorOptions } from "./hidden-states.js";
import { fsyncDir, isSafeName, safeJoin, TMP_MARK, writeFileAtomic } from "./jobs-fs.js";
import { DEFAULT_PROMPTS_FILE, splitPrompts } from "./jobs-prompts.js";
import { encodeProbe, loadProbe, probe as runProbe, type LensProbe } from "./probe.js";
import { subspaceDelta, type DeltaFile } from "./subspace-delta.js";
import { trainAdapter } from "./train.js";

/** What jobs need of a model: the backend's loaded model fits, so does one the CLI assembles. */
export interface JobModel {
  info: ModelInfo;
  tokenizer: ChatTokenizer;
  fingerprint: string;
  /** Where train / subspace jobs with `load: true` put their delta. */
  deltas?: { put(bytes: Uint8Array, manifest: unknown): PutResult };
  /** The generation engine (eval jobs generate replies through it). */
  engine?: Engine;
}

export interface EvalContext {
  model: JobModel;
  request: EvalJobRequest;
  delta: DeltaFile;
  /** The probe the delta was made from, when a probe job here made it (for the alignment figures). */
  probe: LensProbe | null;
  promptsFile: string;
  signal: AbortSignal;
  progress: (p: LensJobProgress) => void;
  sessionOptions?: ort.InferenceSession.SessionOptions;
}
/** Evaluates a delta; the returned report becomes the eval job's artifact (a JSON file). */
export type EvaluateFn = (ctx: EvalContext) => Promise<Record<string, unknown>>;

export interface LensJobRunnerOptions {
  /** The jobs folder (default: defaultJobsDir()). */
  dir?: string;
  /** The held-out prompts (default data/lens-prompts/prompts.jsonl). */
  promptsFile?: string;
  /** For the inference sessions jobs open (default: one thread, so jobs leave the generator room). */
  sessionOptions?: ort.InferenceSession.SessionOptions;
  /** Prompts per forward pass (default: the collector's). */
  batchSize?: number;
  /** Eval jobs are refused ("not_available") without one. */
  evaluate?: EvaluateFn | null;
  /** Where job events are reported (default: nowhere). */
  log?: (line: string) => void;
}

export const JOB_FILE = "job.json";
export const DEFAULT_SESSION_OPTIONS: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 };

/** LENS_JOBS_DIR, else `.lens/jobs` in this repository (else in the working directory). */
export function defaultJobsDir(env: Record<string, string | undefined> = process.env): string {
  const fromEnv = env["LENS_JOBS_DIR"];
  if (fromEnv !== undefined && fromEnv !== "") return resolve(fromEnv);
  const repo = fileURLToPath(new URL("../../../", import.meta.url));
  const base = existsSync(join(repo, "package.json")) ? repo : process.cwd();
  return join(base, ".lens", "jobs");
}

/** An error a caller should see as such (HTTP status from its code), not as a backend failure. */
export class LensJobError extends Error {
  constructor(
    readonly code: LensJobErrorCode,
    message: string,
  ) {
    super(message);
  }
}

interface Job {
  /** Order of arrival in this process (ties of created_at, which has millisecond resolution). */
  seq: number;
  record: LensJobRecord;
  request: LensJobRequest;
  controller?: AbortController;
}

interface WorkOutput {
  artifact: { kind: LensJobArtifact["kind"]; id: string; tensors: Uint8Array | null; manifest: unknown };
  result: Record<string, unknown>;
  /** Runs after the files are in place (e.g. loading the delta into the store); adds to `result`. */
  after?: () => Record<string, unknown>;
}

const newJobId = () => `job-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
const nowIso = () => new Date().toISOString();
const toJson = (x: unknown) => JSON.parse(JSON.stringify(x)) as Record<string, never>;
/** Milliseconds to 0.1. */
const ms = (x: number) => Math.round(x * 10) / 10;

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

  constructor(
    readonly model: JobModel,
    private readonly options: LensJobRunnerOptions = {},
  ) {
    this.dir = resolve(options.dir ?? defaultJobsDir());
    this.promptsFile = options.promptsFile ?? DEFAULT_PROMPTS_FILE;
    this.sessionOptions = options.sessionOptions ?? DEFAULT_SESSION_OPTIONS;
    mkdirSync(this.dir, { recursive: true });
    this.recover();
    queueMicrotask(() => this.pump());
  }

  get evalAvailable(): boolean {
    return typeof this.options.evaluate === "function";
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
    mkdirSync(this.jobDir(id), { recursive: true });
    this.jobs.set(id, job);
    this.persist(job);
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
      .sort((a, b) => (a.record.created_at < b.record.created_at ? 1 : a.record.created_at > b.record.created_at ? -1 : b.seq - a.seq))
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
  artifactPath(id: string, part: "tensors" | "manifest" = "tensors"): { path: string; name: string; artifact: LensJobArtifact } {
    const job = this.require(id);
    const a = job.record.artifact;
    if (job.record.state !== "succeeded" || a === null) throw new LensJobError("not_found", `job ${id} has no artifact (it is ${job.record.state})`);
    const name = part === "tensors" ? a.tensors : a.manifest;
    if (name === null) throw new LensJobError("not_found", `job ${id}'s artifact has no ${part} file`);
    const path = safeJoin(this.jobDir(id), name);
    if (!existsSync(path)) throw new LensJobError("not_found", `job ${id}'s ${part} file is gone`);
    return { path, name, artifact: a };
  }

  /** Stops taking jobs, cancels the running one and waits for it. Queued jobs stay queued on disk. */
  async close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    for (const job of this.jobs.values()) if (job.record.state === "running") job.controller?.abort(new LensJobError("conflict", "cancelled: the runner closed"));
    await this.current;
  }

  // ------------------------------------------------------------------------------------------------
  // Checks at submission (so a bad request fails with 4xx, not as a failed job)

  private check(r: LensJobRequest): void {
    const { info } = this.model;
    const badLayers = (layers: number[]) => layers.filter((l) => l >= info.numLayers);
    if (r.kind === "probe") {
      const bad = badLayers(r.layers);
      if (bad.length > 0) throw new LensJobError("invalid_request", `layers ${bad.join(", ")} are out of range: the model has layers 0..${info.numLayers - 1}`);
      if (r.rank !== undefined && r.rank > r.languages.length - 1) throw new LensJobError("invalid_request", `rank ${r.rank} is over L - 1 = ${r.languages.length - 1}`);
    } else if (r.kind === "subspace") {
      const bad = badLayers(r.layers);
      if (bad.length > 0) throw new LensJobError("invalid_request", `layers ${bad.join(", ")} are out of range: the model has layers 0..${info.numLayers - 1}`);
      this.probeSource(r.probe, true);
    } else if (r.kind === "train") {
      if (r.rank > info.hiddenSize) throw new LensJobError("invalid_request", `rank ${r.rank} exceeds the hidden size ${info.hiddenSize}`);
      this.probeSource(r.probe, false);
    } else {
      if (!this.evalAvailable) throw new LensJobError("not_available", "eval jobs are not available on this backend yet (no evaluator is built in)");
      this.deltaSource(r.delta, false);
    }
  }

  /** The probe job a reference names (its job id, or the probe id it made). */
  private probeSource(ref: string, mustBeDone: boolean): Job {
    return this.source(ref, "probe", mustBeDone);
  }

  private deltaSource(ref: string, mustBeDone: boolean): Job {
    return this.source(ref, ["train", "subspace"], mustBeDone);
  }

  private source(ref: string, kinds: string | string[], mustBeDone: boolean): Job {
    const wanted = Array.isArray(kinds) ? kinds : [kinds];
    const what = wanted.join(" or ");
    let job: Job | undefined;
    if (JobId.safeParse(ref).success) job = this.jobs.get(ref);
    else if (DeltaId.safeParse(ref).success) {
      job = [...this.jobs.values()].find((j) => j.record.state === "succeeded" && j.record.artifact?.id === ref && wanted.includes(j.record.kind));
    } else throw new LensJobError("invalid_request", `invalid reference ${JSON.stringify(ref)}`);
    if (!job || !wanted.includes(job.record.kind)) throw new LensJobError("not_found", `no ${what} job or artifact "${ref}"`);
    const { state } = job.record;
    if (state === "failed" || state === "cancelled") throw new LensJobError("conflict", `${what} job ${job.record.id} ${state}`);
    if (mustBeDone && state !== "succeeded") throw new LensJobError("conflict", `${what} job ${job.record.id} has not finished (it is ${state})`);
    return job;
  }

  private loadProbeOf(ref: string): LensProbe {
    const job = this.probeSource(ref, true);
    return loadProbe(this.jobDir(job.record.id), job.record.artifact!.id);
  }

  // ------------------------------------------------------------------------------------------------
  // Running

  private pump(): void {
    if (this.current !== null || this.closed) return;
    const id = this.queue.shift();
    if (id === undefined) return;
    const job = this.jobs.get(id);
    if (!job || job.record.state !== "queued") return this.pump();
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
    this.persist(job);
    this.log(`${job.record.id} ${job.record.kind} running`);
    try {
      const out = await this.work(job, signal);
      // A cancel that arrived while synchronous work ran is honoured here: nothing is written.
      signal.throwIfAborted();
      job.record.progress = { ...(job.record.progress ?? { done: 0, total: 0 }), stage: "writing" };
      const w0 = performance.now();
      const artifact = this.writeArtifact(job, out.artifact);
      const timings = { ...(out.result["timings_ms"] as Record<string, number> | undefined), write: ms(performance.now() - w0) };
      job.record.artifact = artifact;
      job.record.result = toJson({ ...out.result, ...(out.after ? out.after() : {}), timings_ms: timings });
      this.finish(job, "succeeded", null);
    } catch (err) {
      this.removePartial(job.record.id);
      job.record.artifact = null;
      if (signal.aborted) this.finish(job, "cancelled", { message: signal.reason instanceof LensJobError ? signal.reason.message : "cancelled" });
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
    this.persist(job);
    this.log(`${job.record.id} ${state}${error ? `: ${error.message}` : ""}`);
    const list = this.waiters.get(job.record.id);
    this.waiters.delete(job.record.id);
    for (const w of list ?? []) w(structuredClone(job.record));
  }

  private progress(job: Job, p: LensJobProgress): void {
    job.record.progress = p;
  }

  private work(job: Job, signal: AbortSignal): Promise<WorkOutput> {
    const r = job.request;
    switch (r.kind) {
      case "probe":
        return this.probeWork(job, r, signal);
      case "train":
        return this.trainWork(job, r, signal);
      case "subspace":
        return Promise.resolve().then(() => this.subspaceWork(r));
      case "eval":
        return this.evalWork(job, r, signal);
    }
  }

  private async probeWork(job: Job, r: ProbeJobRequest, signal: AbortSignal): Promise<WorkOutput> {
    const started = performance.now();
    const prompts: Record<string, readonly string[]> =
      r.prompts === "probe" ? splitPrompts("probe", r.languages, r.per_language, this.promptsFile) : Object.fromEntries(r.languages.map((l) => [l, (r.prompts as Record<string, string[]>)[l]!]));
    const promptOptions = {
      ...(r.max_prompt_tokens !== undefined ? { maxPromptTokens: r.max_prompt_tokens } : {}),
      ...(r.truncation !== undefined ? { truncation: r.truncation } : {}),
      ...(r.system !== undefined ? { system: r.system } : {}),
    };
    const collectorOptions: CollectorOptions = {
      ...promptOptions,
      sessionOptions: this.sessionOptions,
      ...(this.options.batchSize !== undefined ? { batchSize: this.options.batchSize } : {}),
    };
    const collector = await HiddenStateCollector.create({ info: this.model.info, tokenizer: this.model.tokenizer }, r.layers, collectorOptions);
    const sessionMs = performance.now() - started;
    let collectMs = 0;
    let done = 0;
    const total = r.languages.length;
    this.progress(job, { stage: "collecting", done, total });
    // Each language's states are collected in one call: check the signal and count progress there.
    const collect = collector.collect.bind(collector);
    collector.collect = async (texts) => {
      signal.throwIfAborted();
      const t = performance.now();
      const states = await collect(texts);
      collectMs += performance.now() - t;
      this.progress(job, { stage: "collecting", done: ++done, total });
      signal.throwIfAborted();
      return states;
    };
    let p: LensProbe;
    const t0 = performance.now();
    try {
      p = await runProbe(collector, prompts, r.layers, r.central, { ...promptOptions, fingerprint: this.model.fingerprint, ...(r.rank !== undefined ? { rank: r.rank } : {}) });
    } finally {
      await collector.release();
    }
    const probeMs = performance.now() - t0;
    const w0 = performance.now();
    const { bytes, manifest } = encodeProbe(p);
    const encodeMs = performance.now() - w0;
    return {
      artifact: { kind: "probe", id: p.id, tensors: bytes, manifest },
      result: {
        probe_id: p.id,
        languages: p.languages,
        layers: p.layers.map((l) => l.layer),
        ranks: Object.fromEntries(p.layers.map((l) => [String(l.layer), l.rank])),
        prompts_per_language: p.counts,
        timings_ms: { session: ms(sessionMs), collect: ms(collectMs), math: ms(probeMs - collectMs), encode: ms(encodeMs) },
      },
    };
  }

  private async trainWork(job: Job, r: TrainJobRequest, signal: AbortSignal): Promise<WorkOutput> {
    // A probe job this one names may have been queued before it: it has run by now (one queue).
    const probe = this.loadProbeOf(r.probe);
    const central = probe.central;
    let prompts: { en: string[]; target: string[] };
    if (r.prompts === "train") {
      const split = splitPrompts("train", [central, r.language], r.per_language, this.promptsFile);
      prompts = { en: split[central]!, target: split[r.language]! };
    } else prompts = { en: r.prompts.central, target: r.prompts.target };
    this.progress(job, { stage: "reading states", done: 0, total: r.steps ?? 0 });
    const trained = await trainAdapter({
      model: { info: this.model.info, tokenizer: this.model.tokenizer },
      probe,
      language: r.language,
      central,
      prompts,
      fingerprint: this.model.fingerprint,
      rank: r.rank,
      ...(r.steps !== undefined ? { steps: r.steps } : {}),
      ...(r.lr !== undefined ? { lr: r.lr } : {}),
      ...(r.weights.w_r !== undefined ? { w_r: r.weights.w_r } : {}),
      ...(r.weights.w_a !== undefined ? { w_a: r.weights.w_a } : {}),
      ...(r.weights.alpha !== undefined ? { alpha: r.weights.alpha } : {}),
      ...(r.seed !== undefined ? { seed: r.seed } : {}),
      sessionOptions: this.sessionOptions,
      ...(this.options.batchSize !== undefined ? { batchSize: this.options.batchSize } : {}),
      signal,
      onStep: (s) => {
        const { total, retain, push, align } = s.losses;
        this.progress(job, { stage: "fitting", done: s.step + 1, total: s.steps, losses: { total, retain, push, align } });
      },
    });
    const w0 = performance.now();
    const file = adapterDelta(trained, { dtype: r.dtype, ...(r.description !== undefined ? { description: r.description } : {}) });
    const encodeMs = performance.now() - w0;
    const first = trained.losses[0]!;
    const last = trained.losses[trained.losses.length - 1]!;
    return {
      artifact: { kind: "delta", id: file.manifest.id, tensors: file.bytes, manifest: file.manifest },
      result: {
        delta_id: file.manifest.id,
        probe_id: probe.id,
        language: r.language,
        layer: trained.layer,
        prompts: trained.prompts,
        loss_initial: first.total,
        loss_final: last.total,
        timings_ms: { states: ms(trained.timings.statesMs), train: ms(trained.timings.trainMs), encode: ms(encodeMs) },
      },
      after: () => this.maybeLoad(r.load, file),
    };
  }

  private subspaceWork(r: SubspaceJobRequest): WorkOutput {
    const probe = this.loadProbeOf(r.probe);
    const file = subspaceDelta(probe, {
      language: r.language,
      layers: r.layers,
      lambda: r.lambda,
      alpha: r.alpha,
      dtype: r.dtype,
      ...(r.description !== undefined ? { description: r.description } : {}),
    });
    return {
      artifact: { kind: "delta", id: file.manifest.id, tensors: file.bytes, manifest: file.manifest },
      result: { delta_id: file.manifest.id, probe_id: probe.id, language: r.language, layers: file.manifest.layers, rank: file.manifest.rank },
      after: () => this.maybeLoad(r.load, file),
    };
  }

  private async evalWork(job: Job, r: EvalJobRequest, signal: AbortSignal): Promise<WorkOutput> {
    const evaluate = this.options.evaluate;
    if (typeof evaluate !== "function") throw new LensJobError("not_available", "eval jobs are not available on this backend yet");
    const source = this.deltaSource(r.delta, true);
    const tensors = this.artifactPath(source.record.id, "tensors");
    const manifest = this.artifactPath(source.record.id, "manifest");
    const delta: DeltaFile = {
      bytes: new Uint8Array(readFileSync(tensors.path)),
      manifest: JSON.parse(readFileSync(manifest.path, "utf8")) as DeltaFile["manifest"],
    };
    const probeId = (delta.manifest.method as Record<string, unknown>)["probe"];
    const probeJob =
      typeof probeId === "string" && DeltaId.safeParse(probeId).success
        ? [...this.jobs.values()].find((j) => j.record.kind === "probe" && j.record.state === "succeeded" && j.record.artifact?.id === probeId)
        : undefined;
    const probe = probeJob ? loadProbe(this.jobDir(probeJob.record.id), probeJob.record.artifact!.id) : null;
    const report = await evaluate({
      model: this.model,
      request: r,
      delta,
      probe,
      promptsFile: this.promptsFile,
      signal,
      progress: (p) => this.progress(job, p),
      sessionOptions: this.sessionOptions,
    });
    return {
      artifact: { kind: "report", id: job.record.id, tensors: null, manifest: { delta_id: delta.manifest.id, ...report } },
      result: { delta_id: delta.manifest.id, ...(typeof report["summary"] === "object" && report["summary"] !== null ? (report["summary"] as Record<string, unknown>) : {}) },
    };
  }

  private maybeLoad(load: boolean, file: DeltaFile): Record<string, unknown> {
    if (!load) return { loaded: false };
    if (!this.model.deltas) return { loaded: false, load_error: "this runner has no delta store" };
    const put = this.model.deltas.put(file.bytes, file.manifest);
    return put.ok ? { loaded: true } : { loaded: false, load_error: `${put.error.code}: ${put.error.message}` };
  }

  // ------------------------------------------------------------------------------------------------
  // Files

  private jobDir(id: string): string {
    JobId.parse(id);
    return safeJoin(this.dir, id);
  }

  private require(id: string): Job {
    if (!JobId.safeParse(id).success) throw new LensJobError("invalid_request", `invalid job id ${JSON.stringify(id)}`);
    const job = this.jobs.get(id);
    if (!job) throw new LensJobError("not_found", `no job ${id}`);
    return job;
  }

  private persist(job: Job): void {
    writeFileAtomic(this.jobDir(job.record.id), JOB_FILE, `${JSON.stringify(job.record, null, 2)}\n`);
  }

  /** Tensors first, then the manifest, each atomically; the record naming them is written after. */
  private writeArtifact(job: Job, a: WorkOutput["artifact"]): LensJobArtifact {
    DeltaId.parse(a.id);
    const dir = this.jobDir(job.record.id);
    const manifestText = `${JSON.stringify(a.manifest, null, 2)}\n`;
    const tensorsName = a.tensors === null ? null : `${a.id}.safetensors`;
    const manifestName = `${a.id}.json`;
    if (tensorsName !== null && a.tensors !== null) writeFileAtomic(dir, tensorsName, a.tensors);
    writeFileAtomic(dir, manifestName, manifestText);
    const main = a.tensors ?? new TextEncoder().encode(manifestText);
    return { kind: a.kind, id: a.id, tensors: tensorsName, manifest: manifestName, bytes: main.byteLength, sha256: sha256(main) };
  }

  /** Removes everything in the job's folder but its record (and temporary files of the record). */
  private removePartial(id: string): void {
    const dir = this.jobDir(id);
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) if (name !== JOB_FILE) rmSync(join(dir, name), { recursive: true, force: true });
  }

  /** Reads the jobs folder at start-up (see the file comment). */
  private recover(): void {
    const found: Job[] = [];
    for (const name of readdirSync(this.dir)) {
      if (!JobId.safeParse(name).success) continue; // not ours: leave it alone
      const dir = join(this.dir, name);
      if (!statSync(dir).isDirectory()) continue;
      for (const f of readdirSync(dir)) if (f.includes(TMP_MARK)) rmSync(join(dir, f), { force: true });
      const recordPath = join(dir, JOB_FILE);
      if (!existsSync(recordPath)) {
        // Created, then cut off before its first record was in place: nothing to keep.
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      let record: LensJobRecord;
      let request: LensJobRequest;
      try {
        record = LensJobRecord.parse(JSON.parse(readFileSync(recordPath, "utf8")));
        request = LensJobRequest.parse(record.request);
        if (record.id !== name) throw new Error(`it names job ${record.id}`);
      } catch (err) {
        this.log(`skipping ${name}: its record cannot be read (${(err as Error).message})`);
        continue;
      }
      const job: Job = { seq: 0, record, request };
      if (record.state === "running") {
        this.removePartial(name);
        record.state = "failed";
        record.error = { message: "interrupted by a restart" };
        record.finished_at = nowIso();
        record.artifact = null;
        this.persist(job);
        this.log(`${name} was running: marked failed (interrupted by a restart)`);
      } else if (record.state === "succeeded" && record.artifact !== null) {
        const names = [record.artifact.tensors, record.artifact.manifest].filter((n): n is string => n !== null);
        if (!names.every((n) => isSafeName(n) && existsSync(join(dir, n)))) {
          this.log(`${name}: its artifact files are missing`);
        }
      }
      found.push(job);
    }
    found.sort((a, b) => (a.record.created_at < b.record.created_at ? -1 : a.record.created_at > b.record.created_at ? 1 : 0));
    for (const job of found) {
      job.seq = this.seq++;
      this.jobs.set(job.record.id, job);
      if (job.record.state === "queued") this.queue.push(job.record.id);
    }
    fsyncDir(this.dir);
  }

  private log(line: string): void {
    this.options.log?.(line);
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
