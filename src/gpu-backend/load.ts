/** Loads a model directory into a ready engine: tokenizer, session(s), fingerprint. */
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";
import { describeResidualStream } from "./graph/delta-hooks.js";
import { ChatTokenizer } from "./model/chat-tokenizer.js";
import { modelFingerprint } from "./model/fingerprint.js";
import { type ModelInfo, readModelDir } from "./model/model-dir.js";
import { Engine, type EngineOptions, type HookedSessions } from "./generation/engine.js";
import { ModelRunner } from "./generation/model-runner.js";
import { hookedSessions } from "./deltas/hooked-session.js";
import { DeltaStore } from "./deltas/store.js";

export type ExecutionProvider = "cpu" | "cuda";

export interface LoadOptions extends EngineOptions {
  executionProvider: ExecutionProvider;
  /** Provides delta-hooked sessions; default: one per set of edited layers, built on first use. `null`: no deltas. */
  hook?: ((info: ModelInfo, sessionOptions: ort.InferenceSession.SessionOptions) => HookedSessions) | null;
  /** Largest delta file accepted, and the bound on all deltas held (decoded, float32). */
  maxDeltaFileBytes?: number;
  maxDeltaMemoryBytes?: number;
}

export interface LoadedModel {
  info: ModelInfo;
  fingerprint: string;
  tokenizer: ChatTokenizer;
  engine: Engine;
  deltas: DeltaStore;
  created: number;
}

export function sessionOptions(ep: ExecutionProvider): ort.InferenceSession.SessionOptions {
  // CUDA needs onnxruntime-node's GPU build on the server (its install script fetches it).
  return { executionProviders: ep === "cuda" ? ["cuda", "cpu"] : ["cpu"], graphOptimizationLevel: "all" };
}

export async function loadModel(dir: string, options: LoadOptions): Promise<LoadedModel> {
  const info = readModelDir(dir);
  const tokenizer = ChatTokenizer.fromDir(info.dir);
  const opts = sessionOptions(options.executionProvider);
  const session = await ort.InferenceSession.create(info.onnxPath, opts);
  const base = new ModelRunner(info, session, ModelRunner.kvIsFp16(session, info));
  const hook = options.hook === undefined ? hookedSessions : options.hook;
  let hooked = hook ? hook(info, opts) : null;
  if (hooked && options.hook === undefined) {
    // Find the residual stream now, so a graph the surgery cannot read fails at load, not per request.
    try {
      describeResidualStream(readFileSync(info.onnxPath), { numLayers: info.numLayers, hiddenSize: info.hiddenSize });
    } catch (err) {
      console.warn(`deltas disabled for ${info.id}: ${(err as Error).message}`);
      hooked = null;
    }
  }
  const engine = new Engine(info, tokenizer, base, hooked, options);
  const fingerprint = await modelFingerprint(info.onnxPath);
  const deltas = new DeltaStore({
    fingerprint,
    hiddenSize: info.hiddenSize,
    numLayers: info.numLayers,
    maxBytes: options.maxDeltaFileBytes ?? 64 * 2 ** 20,
    maxDecodedBytes: options.maxDeltaMemoryBytes ?? 512 * 2 ** 20,
  });
  return { info, fingerprint, tokenizer, engine, deltas, created: Math.floor(Date.now() / 1000) };
}
