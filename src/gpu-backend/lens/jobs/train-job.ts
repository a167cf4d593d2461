/**
 * The train job's work: a trained delta for one target language trained against a probe's subspaces
 * (../train/train.ts), encoded as a delta file (the job's artifact), loaded into the store on request.
 */
import type { TrainJobRequest } from "../../../protocol/lens-jobs.js";
import { trainedDeltaFile } from "../train/delta-file.js";
import { trainDelta } from "../train/train.js";
import { splitPrompts } from "./prompts.js";
import { loadDelta, ms, type JobContext, type WorkOutput } from "./work.js";

export async function trainWork(ctx: JobContext, r: TrainJobRequest): Promise<WorkOutput> {
  const { model } = ctx;
  // A probe job this one names may have been queued before it: it has run by now (one queue).
  const probe = ctx.probe(r.probe);
  const central = probe.central;
  let prompts: { en: string[]; target: string[] };
  if (r.prompts === "train") {
    const split = splitPrompts("train", [central, r.language], r.per_language, ctx.promptsFile);
    prompts = { en: split[central]!, target: split[r.language]! };
  } else prompts = { en: r.prompts.central, target: r.prompts.target };
  ctx.progress({ stage: "reading states", done: 0, total: r.steps ?? 0 });
  const trained = await trainDelta({
    model: { info: model.info, tokenizer: model.tokenizer },
    probe,
    language: r.language,
    central,
    prompts,
    fingerprint: model.fingerprint,
    rank: r.rank,
    ...(r.steps !== undefined ? { steps: r.steps } : {}),
    ...(r.lr !== undefined ? { lr: r.lr } : {}),
    ...(r.weights.w_r !== undefined ? { w_r: r.weights.w_r } : {}),
    ...(r.weights.w_a !== undefined ? { w_a: r.weights.w_a } : {}),
    ...(r.weights.alpha !== undefined ? { alpha: r.weights.alpha } : {}),
    ...(r.seed !== undefined ? { seed: r.seed } : {}),
    sessionOptions: ctx.sessionOptions,
    ...(ctx.batchSize !== undefined ? { batchSize: ctx.batchSize } : {}),
    signal: ctx.signal,
    onStep: (s) => {
      const { total, retain, push, align } = s.losses;
      ctx.progress({ stage: "fitting", done: s.step + 1, total: s.steps, losses: { total, retain, push, align } });
    },
  });
  const w0 = performance.now();
  const file = trainedDeltaFile(trained, {
    dtype: r.dtype,
    ...(r.description !== undefined ? { description: r.description } : {}),
  });
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
    after: () => loadDelta(model, r.load, file),
  };
}
