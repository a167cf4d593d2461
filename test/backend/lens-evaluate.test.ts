/**
 * The delta evaluation's metrics on known cases (src/gpu-backend/lens/eval/): drift of a zero
 * delta is exactly 0 and of a strong random one is not; fidelity counts match a hand count; bits per
 * byte match an independent token-by-token computation with the KV cache (base and edited); the
 * exposed hidden state is the edited one, h + (h A) B + b.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHookedSession } from "../../src/gpu-backend/deltas/hooked-session.js";
import { toRowDelta } from "../../src/gpu-backend/deltas/row-delta.js";
import type { ModelRunner } from "../../src/gpu-backend/generation/model-runner.js";
import { emptyKv, type KvBatch } from "../../src/gpu-backend/generation/kv-batch.js";
import { lastStates } from "../../src/gpu-backend/lens/eval/alignment.js";
import { bitsPerByteOf, bitsRow } from "../../src/gpu-backend/lens/eval/bits-per-byte.js";
import { driftOf, lastAndAllLogits } from "../../src/gpu-backend/lens/eval/drift.js";
import { countFidelity, generateReplies, languageFidelity } from "../../src/gpu-backend/lens/eval/fidelity.js";
import { ForwardPasses, klDivergence, type NamedDelta } from "../../src/gpu-backend/lens/eval/passes.js";
import { probePromptIds } from "../../src/gpu-backend/lens/hidden-states.js";
import { loadModel, sessionOptions, type LoadedModel } from "../../src/gpu-backend/load.js";
import { detectLanguage } from "../../src/language/detect.js";
import { makeDelta } from "../../dev/make-delta.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

describe("klDivergence and countFidelity (no model)", () => {
  it("KL is 0 for identical logits, matches a hand computation, and is positive otherwise", () => {
    const p = Float32Array.from([1, 2, 3, 0.5]);
    expect(klDivergence(p, 0, Float32Array.from(p), 0, 4)).toBe(0);
    // Two outcomes: p = (1/2, 1/2), q = (1/(1+e), e/(1+e)) from logits (0, 0) and (0, 1).
    const q0 = 1 / (1 + Math.E);
    const expected = 0.5 * Math.log(0.5 / q0) + 0.5 * Math.log(0.5 / (1 - q0));
    expect(klDivergence([0, 0], 0, [0, 1], 0, 2)).toBeCloseTo(expected, 12);
    // Offsets address the right slice.
    expect(klDivergence([9, 0, 0], 1, [9, 9, 0, 1], 2, 2)).toBeCloseTo(expected, 12);
  });

  it("counts faithful and und replies as a hand count does", () => {
    const replies = [
      "El gato duerme en la casa de mi madre todos los días.",
      "The quick brown fox jumps over the lazy dog near the river.",
      "ok",
      "Hola, ¿cómo estás? Me llamo Juan y vivo en Madrid con mi familia.",
      "  12345  ",
      "Le chat dort dans la maison de ma mère tous les jours.",
    ];
    // By hand: two Spanish, one English, one French, two too short / no letters (und).
    const f = countFidelity(
      "es",
      replies.map((_, i) => `p${i}`),
      replies,
      2,
    );
    expect(f).toMatchObject({ prompts: 6, faithful: 2, und: 2, detected: { es: 2, en: 1, fr: 1, und: 2 } });
    expect(f.rate).toBeCloseTo(2 / 6, 15);
    expect(f.undRate).toBeCloseTo(2 / 6, 15);
    expect(f.examples).toEqual([
      { prompt: "p0", reply: replies[0], detected: "es" },
      { prompt: "p1", reply: replies[1], detected: "en" },
    ]);
    // Another target language over the same replies: und never counts as faithful.
    expect(countFidelity("fr", replies, replies).faithful).toBe(1);
    expect(countFidelity("und", replies, replies).faithful).toBe(0);
    expect(JSON.parse(JSON.stringify(f))).toEqual(f);
  });
});

/** Sum over ids[from..] of -log2 p(token | before), feeding the ids one at a time through the KV cache. */
async function bitsTokenByToken(
  runner: ModelRunner,
  ids: number[],
  from: number,
  extraFeeds?: Record<string, import("onnxruntime-node").Tensor>,
): Promise<number> {
  let kv: KvBatch = emptyKv(runner.shape, 1);
  let bits = 0;
  for (let t = 0; t < ids.length - 1; t++) {
    const out = await runner.step({ kv, tokens: [[ids[t]!]], positions: [t], ...(extraFeeds ? { extraFeeds } : {}) });
    kv = out.kv;
    if (t + 1 < from) continue;
    let mx = -Infinity;
    for (let j = 0; j < out.vocab; j++) mx = Math.max(mx, out.logits[j]!);
    let s = 0;
    for (let j = 0; j < out.vocab; j++) s += Math.exp(out.logits[j]! - mx);
    bits -= (out.logits[ids[t + 1]!]! - mx - Math.log(s)) / Math.LN2;
  }
  return bits;
}

const embedded = MODEL_CASES[0]!;
const SESSION_OPTIONS = { intraOpNumThreads: 1, interOpNumThreads: 1 };

describe.skipIf(embedded.skip !== null)("evaluation metrics on the embedded model", () => {
  let m: LoadedModel;
  let passes: ForwardPasses;
  let top: number;
  let zero: NamedDelta;
  let strong: NamedDelta;
  const english = ["What does the word river mean?", "Reverses the value of the argument.", "Hi"];

  beforeAll(async () => {
    m = await loadModel(embedded.dir, { executionProvider: "cpu", maxBatch: 8, maxQueue: 64 });
    top = m.info.numLayers - 1;
    passes = new ForwardPasses(m.info, [top], SESSION_OPTIONS);
    const made = (seed: number, isZero: boolean, scale: number) => {
      const d = makeDelta({
        hiddenSize: m.info.hiddenSize,
        layers: [top],
        rank: 4,
        fingerprint: m.fingerprint,
        id: `eval-test-${seed}`,
        seed,
        zero: isZero,
        scale,
      });
      return { id: d.manifest.id, layers: d.layers };
    };
    zero = made(1, true, 0);
    strong = made(2, false, 1);
  });
  afterAll(async () => {
    await passes?.release();
  });

  it("English drift: a zero delta gives exactly 0, a strong random delta gives KL > 0", async () => {
    const ids = english.map((t) => probePromptIds(m.tokenizer, t, { maxPromptTokens: 192 }));
    const base = await lastAndAllLogits(passes, ids, null, 2);
    const withZero = driftOf(base, await lastAndAllLogits(passes, ids, zero.layers, 2));
    expect(withZero).toEqual({
      prompts: 3,
      klLast: 0,
      klLastMax: 0,
      positions: ids.reduce((s, r) => s + r.length, 0),
      klAllPositions: 0,
    });
    const withStrong = driftOf(base, await lastAndAllLogits(passes, ids, strong.layers, 2));
    expect(withStrong.klLast).toBeGreaterThan(1e-2);
    expect(withStrong.klAllPositions).toBeGreaterThan(1e-2);
    expect(withStrong.klLastMax).toBeGreaterThanOrEqual(withStrong.klLast);
    // The last-position logits of a pass are the engine's own (ModelRunner, one row, no padding).
    const runner = m.engine.baseRunner;
    const own = await runner.step({ kv: emptyKv(runner.shape, 1), tokens: [ids[0]!], positions: [0] });
    const V = base.vocab;
    const last = base.rows[0]!.subarray(base.rows[0]!.length - V);
    expect(Math.max(...Array.from(last, (v, j) => Math.abs(v - own.logits[j]!)))).toBeLessThan(1e-4);
  });

  it("bits per byte equal a token-by-token computation with the KV cache, base and edited, batched with padding", async () => {
    const texts = ["Kila mtu ana haki ya kuishi.", "对参数值求反。", "Hi there"];
    const rows = texts.map((t) => bitsRow(m.tokenizer, t, 256));
    rows.forEach((r, i) => {
      expect(r.bytes).toBe(Buffer.byteLength(texts[i]!, "utf8"));
      // lens-tiny-chat: "<|user|>\n" then the text's bytes.
      expect(r.from).toBe(2);
      expect(r.ids.slice(r.from)).toEqual(m.tokenizer.encode(texts[i]!));
    });
    const hooked = await createHookedSession(m.info, sessionOptions("cpu"), [top]);
    const feeds = hooked.feeds([toRowDelta(strong.id, 1, strong.layers)]);
    let baseBits = 0;
    let editedBits = 0;
    for (const r of rows) {
      baseBits += await bitsTokenByToken(m.engine.baseRunner, r.ids, r.from);
      editedBits += await bitsTokenByToken(hooked.runner, r.ids, r.from, feeds);
    }
    const bytes = texts.reduce((s, t) => s + Buffer.byteLength(t, "utf8"), 0);
    const base = await bitsPerByteOf(passes, rows, null, 8);
    const edited = await bitsPerByteOf(passes, rows, strong.layers, 8);
    expect(base.bytes).toBe(bytes);
    expect(Math.abs(base.bits - baseBits)).toBeLessThan(1e-4 * baseBits);
    expect(Math.abs(edited.bits - editedBits)).toBeLessThan(1e-4 * editedBits);
    expect(base.bitsPerByte).toBeCloseTo(baseBits / bytes, 3);
    // The strong delta really changes the figure, so the edited comparison is not the base one again.
    expect(Math.abs(edited.bits - base.bits)).toBeGreaterThan(1e-2 * base.bits);
    // A window cut keeps whole code points and counts only the bytes kept.
    const cut = bitsRow(m.tokenizer, "对参数值求反。", 2 + 7);
    expect(cut.ids.length).toBeLessThanOrEqual(9);
    expect(cut.bytes).toBe(6);
  });

  it("fidelity through the engine matches a hand count of the same replies; a zero delta replies as base", async () => {
    const prompts = ["Kila mtu ana haki ya kuishi.", "对参数值求反。", "Invierte el valor del argumento."];
    const ids = prompts.map((t) => probePromptIds(m.tokenizer, t, { maxPromptTokens: 192 }));
    const replies = await generateReplies(m.engine, ids, null, 16);
    for (const lang of ["sw", "zh", "es"]) {
      let faithful = 0;
      let und = 0;
      for (const r of replies) {
        const got = detectLanguage(r.trim());
        if (got === lang) faithful++;
        if (got === "und") und++;
      }
      const f = await languageFidelity(m.engine, ids, prompts, lang, null, { maxTokens: 16 });
      expect([f.faithful, f.und, f.prompts]).toEqual([faithful, und, 3]);
    }
    expect(await generateReplies(m.engine, ids, zero, 16)).toEqual(replies);
    expect(await generateReplies(m.engine, ids, strong, 16)).not.toEqual(replies);
  });

  it("the exposed state at the edited layer is the edited one: h + (h A) B + b", async () => {
    const ids = english.map((t) => probePromptIds(m.tokenizer, t));
    const d = m.info.hiddenSize;
    const h = await lastStates(passes, ids, null, top, 2);
    const edited = await lastStates(passes, ids, strong.layers, top, 2);
    const e = strong.layers.get(top)!;
    let worst = 0;
    let moved = 0;
    for (let k = 0; k < ids.length; k++) {
      const x = h.subarray(k * d, (k + 1) * d);
      const hA = new Float64Array(e.rank);
      for (let i = 0; i < d; i++) for (let j = 0; j < e.rank; j++) hA[j]! += x[i]! * e.A[i * e.rank + j]!;
      for (let i = 0; i < d; i++) {
        let v = x[i]! + e.b[i]!;
        for (let j = 0; j < e.rank; j++) v += hA[j]! * e.B[j * d + i]!;
        worst = Math.max(worst, Math.abs(v - edited[k * d + i]!));
        moved = Math.max(moved, Math.abs(x[i]! - edited[k * d + i]!));
      }
    }
    expect(worst).toBeLessThan(1e-3);
    expect(moved).toBeGreaterThan(0.1);
  });
});
