/**
 * English drift. KL(base || edited) in nats between next-token distributions on English prompts (the
 * same templated prompts as generation) with the target language's delta forced on, as if a request
 * were misrouted. `klLast`: at the last prompt position (the distribution of the reply's first token),
 * mean over prompts. `klAllPositions`: at every position of the templated prompt, pooled over all
 * prompts' positions (token-weighted mean). `klLastMax`: the worst prompt.
 */
import { klDivergence, lengthBatches, type DeltaLayers, type ForwardPasses } from "./passes.js";

export interface DriftResult {
  prompts: number;
  /** Mean over prompts of KL(base || edited) at the last prompt position, nats. */
  klLast: number;
  /** The largest of those, nats. */
  klLastMax: number;
  /** Positions pooled over all prompts. */
  positions: number;
  /** Token-weighted mean of KL(base || edited) over every prompt position, nats. */
  klAllPositions: number;
}

export interface PromptLogits {
  vocab: number;
  /** Per prompt: [length, vocab] logits at its real positions. */
  rows: Float32Array[];
}

export async function lastAndAllLogits(
  passes: ForwardPasses,
  prompts: readonly number[][],
  delta: DeltaLayers | null,
  batchSize = 8,
): Promise<PromptLogits> {
  const rows: Float32Array[] = new Array(prompts.length);
  let vocab = 0;
  for (const batch of lengthBatches(prompts, batchSize)) {
    const out = await passes.run(
      batch.map((i) => prompts[i]!),
      delta,
    );
    vocab = out.vocab;
    batch.forEach((i, r) => {
      const len = prompts[i]!.length;
      rows[i] = out.logits.slice((r * out.T + out.T - len) * vocab, (r * out.T + out.T) * vocab);
    });
  }
  return { vocab, rows };
}

/** KL(base || edited) at the last position and over all positions (see the file comment). */
export function driftOf(base: PromptLogits, edited: PromptLogits): DriftResult {
  if (base.rows.length !== edited.rows.length || base.vocab !== edited.vocab)
    throw new RangeError("base and edited logits differ in shape");
  const V = base.vocab;
  let lastSum = 0;
  let lastMax = 0;
  let allSum = 0;
  let positions = 0;
  base.rows.forEach((p, k) => {
    const q = edited.rows[k]!;
    const len = p.length / V;
    for (let t = 0; t < len; t++) {
      const kl = klDivergence(p, t * V, q, t * V, V);
      allSum += kl;
      positions++;
      if (t === len - 1) {
        lastSum += kl;
        lastMax = Math.max(lastMax, kl);
      }
    }
  });
  const n = base.rows.length;
  return {
    prompts: n,
    klLast: n ? lastSum / n : Number.NaN,
    klLastMax: lastMax,
    positions,
    klAllPositions: positions ? allSum / positions : Number.NaN,
  };
}
