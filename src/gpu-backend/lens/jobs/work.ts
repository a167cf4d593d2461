/**
 * What the work of one job kind (probe-job.ts, train-job.ts, subspace-job.ts, eval-job.ts) takes from
 * the runner and gives back. The runner owns the queue, the records and the files; a job kind only
 * computes its artifact from the request and the sources it names.
 */
import type * as ort from "onnxruntime-node";
import type { LensJobArtifact, LensJobErrorCode, LensJobProgress } from "../../../protocol/lens-jobs.js";
import type { PutResult } from "../../deltas/store.js";
import type { Engine } from "../../generation/engine.js";
import type { ChatTokenizer } from "../../model/chat-tokenizer.js";
import type { ModelInfo } from "../../model/model-dir.js";
import type { LensProbe } from "../probe/probe.js";
import type { DeltaFile } from "../probe/subspace-delta.js";

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

/** An error a caller should see as such (HTTP status from its code), not as a backend failure. */
export class LensJobError extends Error {
  constructor(
    readonly code: LensJobErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** One job's view of the runner while its work runs. */
export interface JobContext {
  jobId: string;
  model: JobModel;
  promptsFile: string;
  sessionOptions: ort.InferenceSession.SessionOptions;
  /** Prompts per forward pass (undefined: the collector's default). */
  batchSize: number | undefined;
  signal: AbortSignal;
  progress(p: LensJobProgress): void;
  /** The probe a finished probe job made (a reference: its job id or the probe id). */
  probe(ref: string): LensProbe;
  /** The probe with this id, when a probe job here made it; else null. */
  heldProbe(id: unknown): LensProbe | null;
  /** The delta a finished train or subspace job made (a reference: its job id or the delta id). */
  delta(ref: string): DeltaFile;
}

export interface WorkOutput {
  artifact: { kind: LensJobArtifact["kind"]; id: string; tensors: Uint8Array | null; manifest: unknown };
  result: Record<string, unknown>;
  /** Runs after the files are in place (e.g. loading the delta into the store); adds to `result`. */
  after?: () => Record<string, unknown>;
}

/** Milliseconds to 0.1. */
export const ms = (x: number) => Math.round(x * 10) / 10;

/** Puts a delta a job made into the model's store when the request asked for it; the outcome joins the result. */
export function loadDelta(model: JobModel, load: boolean, file: DeltaFile): Record<string, unknown> {
  if (!load) return { loaded: false };
  if (!model.deltas) return { loaded: false, load_error: "this runner has no delta store" };
  const put = model.deltas.put(file.bytes, file.manifest);
  return put.ok ? { loaded: true } : { loaded: false, load_error: `${put.error.code}: ${put.error.message}` };
}
