/**
 * The eval job's work: a delta made by a train or subspace job, evaluated against the base model on the
 * held-out `eval` split with ../eval/ (language fidelity of greedy replies, English drift, bits per
 * byte, and alignment figures when the delta's probe is held here). The report is the job's artifact.
 *
 * The evaluation itself is a function the runner is given (lensEvaluator by default), so a runner
 * without an engine refuses eval jobs at submission. lensEvaluator generates through the backend's own
 * engine (the serving path), so it needs a model with one (the backend's loaded model; the CLI loads
 * the full model for eval).
 */
import type * as ort from "onnxruntime-node";
import { validateDelta } from "../../../protocol/delta.js";
import type { EvalJobRequest, LensJobProgress } from "../../../protocol/lens-jobs.js";
import { evaluateLanguage } from "../eval/evaluate.js";
import { ForwardPasses } from "../eval/passes.js";
import type { LensProbe } from "../probe/probe.js";
import type { DeltaFile } from "../probe/subspace-delta.js";
import { splitPrompts } from "./prompts.js";
import { LensJobError, type JobContext, type JobModel, type WorkOutput } from "./work.js";

interface EvalContext {
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

export async function evalWork(ctx: JobContext, r: EvalJobRequest, evaluate: EvaluateFn | null): Promise<WorkOutput> {
  if (typeof evaluate !== "function")
    throw new LensJobError("not_available", "eval jobs are not available on this backend yet");
  const delta = ctx.delta(r.delta);
  const probe = ctx.heldProbe((delta.manifest.method as Record<string, unknown>)["probe"]);
  const report = await evaluate({
    model: ctx.model,
    request: r,
    delta,
    probe,
    promptsFile: ctx.promptsFile,
    signal: ctx.signal,
    progress: (p) => ctx.progress(p),
    sessionOptions: ctx.sessionOptions,
  });
  const summary =
    typeof report["summary"] === "object" && report["summary"] !== null
      ? (report["summary"] as Record<string, unknown>)
      : {};
  return {
    artifact: { kind: "report", id: ctx.jobId, tensors: null, manifest: { delta_id: delta.manifest.id, ...report } },
    result: { delta_id: delta.manifest.id, ...summary },
  };
}

export function lensEvaluator(): EvaluateFn {
  return async ({ model, request, delta, probe, promptsFile, signal, progress, sessionOptions }) => {
    const { engine } = model;
    if (!engine)
      throw new LensJobError(
        "not_available",
        "eval jobs need the generation engine (run them on the backend, or the CLI's eval)",
      );
    const { info } = model;
    const checked = validateDelta(delta.bytes, delta.manifest, {
      fingerprint: model.fingerprint,
      hiddenSize: info.hiddenSize,
      numLayers: info.numLayers,
      maxBytes: Math.max(delta.bytes.byteLength, 1),
    });
    if (!checked.ok) throw new Error(`the delta does not fit this model: ${checked.error.message}`);
    const language = delta.manifest.language;
    if (language === "en") throw new RangeError("the delta is for English: there is no target language to evaluate");
    const rows = splitPrompts("eval", ["en", language], request.per_language, promptsFile);
    const layers = checked.delta.layers;
    const alignmentLayer = probe
      ? Math.max(-1, ...[...layers.keys()].filter((l) => probe.layers.some((p) => p.layer === l)))
      : -1;
    const usedProbe = alignmentLayer >= 0 ? probe : null;
    const passes = new ForwardPasses(info, usedProbe ? [alignmentLayer] : [], sessionOptions);
    progress({ stage: "evaluating", done: 0, total: 1 });
    try {
      const evaluation = await evaluateLanguage({ info, tokenizer: model.tokenizer, engine }, passes, {
        language,
        target: rows[language]!,
        english: rows["en"]!,
        deltas: { delta: { id: delta.manifest.id, layers } },
        probe: usedProbe,
        ...(usedProbe ? { alignmentLayer } : {}),
        ...(request.max_tokens !== undefined ? { maxTokens: request.max_tokens } : {}),
        signal,
      });
      progress({ stage: "evaluating", done: 1, total: 1 });
      const d = evaluation.deltas["delta"]!;
      return {
        summary: {
          language,
          prompts: rows[language]!.length,
          fidelity_base: evaluation.base.fidelity.rate,
          fidelity_delta: d.fidelity.rate,
          bits_per_byte_base: evaluation.base.bitsPerByte.bitsPerByte,
          bits_per_byte_delta: d.bitsPerByte.bitsPerByte,
          english_kl_last: d.drift.klLast,
        },
        evaluation,
      };
    } finally {
      await passes.release();
    }
  };
}
