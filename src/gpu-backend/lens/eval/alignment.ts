/**
 * Alignment, at `layer` (the edited layer; hidden state after the delta there), for parallel pairs
 * (target prompt x_l, its English original x_en), prompts templated and cut as the probe cut them (the
 * probe's maxTokens / truncation / system), last-token states. English is never edited (the delta serves
 * the target language only): h_en is the base state; h_l is the base state (base) or the edited one
 * (delta).
 *   cosine        mean over pairs of cos(h_l, h_en)
 *   agnosticGap   mean over pairs of |a.h_l - a.h_en|, a = m_a / ||m_a|| (the probe's language-agnostic
 *                 direction: the align term of Lens's loss pulls these together)
 *   specificGap   mean over pairs of ||P_s h_l - P_s h_en|| (M_s: the probe's language-specific basis;
 *                 the push term moves the target away from English along it)
 * `bothEdited` repeats the three with the English prompt edited too, which is what the trained delta's
 * training losses see (the delta applied to both sides).
 */
import type { ChatTokenizer } from "../../model/chat-tokenizer.js";
import { probePromptIds, type PromptOptions } from "../hidden-states.js";
import type { LensProbe, ProbeLayer } from "../probe/probe.js";
import { lengthBatches, type DeltaLayers, type ForwardPasses } from "./passes.js";

interface AlignmentFigures {
  cosine: number;
  agnosticGap: number;
  specificGap: number;
}

export interface AlignmentResult extends AlignmentFigures {
  layer: number;
  pairs: number;
  /** The same figures with the English prompt edited by the delta too (as the training losses see it); null for base. */
  bothEdited: AlignmentFigures | null;
}

export async function alignmentOf(
  passes: ForwardPasses,
  tokenizer: ChatTokenizer,
  probe: LensProbe,
  layer: number,
  target: readonly string[],
  english: readonly string[],
  delta: DeltaLayers | null,
  batchSize = 8,
): Promise<AlignmentResult> {
  const pl = probe.layers.find((l) => l.layer === layer);
  if (!pl) throw new RangeError(`the probe has no layer ${layer}`);
  const opts: PromptOptions = {
    maxPromptTokens: probe.prompt.maxTokens,
    truncation: probe.prompt.truncation,
    ...(probe.prompt.system !== null ? { system: probe.prompt.system } : {}),
  };
  const n = Math.min(target.length, english.length);
  const tIds = target.slice(0, n).map((t) => probePromptIds(tokenizer, t, opts));
  const eIds = english.slice(0, n).map((t) => probePromptIds(tokenizer, t, opts));
  const hT = await lastStates(passes, tIds, delta, layer, batchSize);
  const hE = await lastStates(passes, eIds, null, layer, batchSize);
  const figures = alignmentFigures(pl, probe.hiddenSize, hT, hE, n);
  const bothEdited = delta
    ? alignmentFigures(pl, probe.hiddenSize, hT, await lastStates(passes, eIds, delta, layer, batchSize), n)
    : null;
  return { layer, pairs: n, ...figures, bothEdited };
}

/** Mean cos(x, y), |a.x - a.y| (a = m_a / ||m_a||) and ||P_s (x - y)|| over n pairs of rows. */
function alignmentFigures(pl: ProbeLayer, d: number, hT: Float64Array, hE: Float64Array, n: number): AlignmentFigures {
  const a = Float64Array.from(pl.m_a);
  const an = Math.sqrt(a.reduce((s, v) => s + v * v, 0));
  for (let i = 0; i < d; i++) a[i]! /= an;
  let cos = 0;
  let agn = 0;
  let spec = 0;
  for (let k = 0; k < n; k++) {
    const x = hT.subarray(k * d, (k + 1) * d);
    const y = hE.subarray(k * d, (k + 1) * d);
    let xy = 0;
    let xx = 0;
    let yy = 0;
    let ax = 0;
    let ay = 0;
    for (let i = 0; i < d; i++) {
      xy += x[i]! * y[i]!;
      xx += x[i]! * x[i]!;
      yy += y[i]! * y[i]!;
      ax += a[i]! * x[i]!;
      ay += a[i]! * y[i]!;
    }
    cos += xy / Math.sqrt(xx * yy);
    agn += Math.abs(ax - ay);
    // ||M_s^T (x - y)|| = ||P_s (x - y)|| (M_s has orthonormal columns).
    let s2 = 0;
    for (let j = 0; j < pl.rank; j++) {
      let c = 0;
      for (let i = 0; i < d; i++) c += pl.M_s[i * pl.rank + j]! * (x[i]! - y[i]!);
      s2 += c * c;
    }
    spec += Math.sqrt(s2);
  }
  return { cosine: cos / n, agnosticGap: agn / n, specificGap: spec / n };
}

/** Last-token states at `layer` (after the delta there), [rows x hidden] in prompt order. */
export async function lastStates(
  passes: ForwardPasses,
  prompts: readonly number[][],
  delta: DeltaLayers | null,
  layer: number,
  batchSize = 8,
): Promise<Float64Array> {
  const d = passes.info.hiddenSize;
  const out = new Float64Array(prompts.length * d);
  for (const batch of lengthBatches(prompts, batchSize)) {
    const r = await passes.run(
      batch.map((i) => prompts[i]!),
      delta,
      { logits: false, hidden: [layer] },
    );
    const h = r.hidden.get(layer)!;
    batch.forEach((i, k) => out.set(h.subarray((k * r.T + r.T - 1) * d, (k * r.T + r.T) * d), i * d));
  }
  return out;
}
