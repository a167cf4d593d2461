/**
 * Lens probe: the math on synthetic data with a known answer, the SVD it rests on, the closed-form
 * subspace edit, hidden-state collection on real exports, and an end-to-end probe -> artifact -> delta.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeResidualStream, insertDeltaHooks } from "../../src/gpu-backend/graph/delta-hooks.js";
import { HiddenStateCollector, probePromptIds } from "../../src/gpu-backend/lens/hidden-states.js";
import { loadProbe, probe, saveProbe } from "../../src/gpu-backend/lens/probe/probe.js";
import { subspaceDelta } from "../../src/gpu-backend/lens/probe/subspace-delta.js";
import { ChatTokenizer } from "../../src/gpu-backend/model/chat-tokenizer.js";
import { modelFingerprint } from "../../src/gpu-backend/model/fingerprint.js";
import { readModelDir } from "../../src/gpu-backend/model/model-dir.js";
import { validateDelta } from "../../src/protocol/delta.js";
import { dot, norm, orthonormalityError, scaled, thinSvd, type Columns } from "../../src/gpu-backend/lens/linalg.js";
import {
  columnsToRowMajor,
  fitLanguageSubspaces,
  languageMean,
  probeLayerFromSamples,
  projectRowMajor,
  subspaceEdit,
} from "../../src/gpu-backend/lens/probe/math.js";
import { deltaFeeds, firstCallFeeds, floatValues, readBytes, seeded, sessionFromBytes } from "./helpers-delta.js";
import { lensPromptsSkip, parallelPrompts } from "./lens-prompts.js";
import { MODEL_CASES } from "../support/model-fixtures.js";
import { knownLanguages, maxAbsDiff64, projectorDistance, randomOrthonormal, shuffled } from "./lens-synthetic.js";

const LANGS = ["en", "sw", "zh", "es", "ar"];

/** Rebuilds U diag(S) V^T as columns and returns max |X - U S V^T|. */
function reconstructionError(x: Columns, U: Columns, S: Float64Array, V: Columns, d: number): number {
  let worst = 0;
  x.forEach((col, l) => {
    const rebuilt = new Float64Array(d);
    U.forEach((u, k) => {
      const w = S[k]! * V[k]![l]!;
      for (let i = 0; i < d; i++) rebuilt[i]! += w * u[i]!;
    });
    worst = Math.max(worst, maxAbsDiff64(col, rebuilt));
  });
  return worst;
}

describe("thinSvd (one-sided Jacobi on the Gram matrix)", () => {
  it("recovers chosen singular values, including tiny and zero ones, with orthonormal factors", () => {
    const rand = seeded(11);
    const d = 300;
    const chosen = [50, 7, 1, 1e-9, 0, 0];
    const L = chosen.length;
    const left = randomOrthonormal(rand, d, L);
    const right = randomOrthonormal(rand, L, L);
    // X = left diag(chosen) right^T, column l = sum_k chosen_k right_k[l] left_k.
    const x: Columns = Array.from({ length: L }, (_, l) => {
      const col = new Float64Array(d);
      chosen.forEach((s, k) => {
        for (let i = 0; i < d; i++) col[i]! += s * right[k]![l]! * left[k]![i]!;
      });
      return col;
    });
    const svd = thinSvd(x, d);
    const sErr = Math.max(...chosen.map((s, k) => Math.abs(svd.S[k]! - s)));
    expect(sErr).toBeLessThan(1e-12 * chosen[0]!);
    // 1e-9 is far above the tolerance (max(d, L) eps s_max ~ 3e-12), the zeros are below it.
    expect(svd.completed).toBe(2);
    expect(orthonormalityError(svd.U)).toBeLessThan(1e-12);
    expect(orthonormalityError(svd.V)).toBeLessThan(1e-12);
    expect(reconstructionError(x, svd.U, svd.S, svd.V, d)).toBeLessThan(1e-12 * chosen[0]!);
    // The Gram relation the method rests on: X^T X v_k = s_k^2 v_k.
    for (let k = 0; k < L; k++) {
      const xv = new Float64Array(d);
      x.forEach((col, l) => {
        for (let i = 0; i < d; i++) xv[i]! += svd.V[k]![l]! * col[i]!;
      });
      const gv = Float64Array.from(x, (col) => dot(col, xv));
      expect(maxAbsDiff64(gv, scaled(svd.S[k]! ** 2, svd.V[k]!))).toBeLessThan(1e-10 * chosen[0]! ** 2);
    }
    // Singular vectors match the chosen ones up to sign for the distinct, well-separated values.
    for (let k = 0; k < 3; k++) expect(Math.abs(Math.abs(dot(svd.U[k]!, left[k]!)) - 1)).toBeLessThan(1e-12);
  });

  it("is exact on a random full-rank matrix and rejects shapes it cannot do", () => {
    const rand = seeded(12);
    const d = 40;
    const x: Columns = Array.from({ length: 7 }, () => Float64Array.from({ length: d }, rand));
    const svd = thinSvd(x, d);
    expect(svd.completed).toBe(0);
    for (let k = 1; k < 7; k++) expect(svd.S[k]!).toBeLessThanOrEqual(svd.S[k - 1]!);
    expect(reconstructionError(x, svd.U, svd.S, svd.V, d)).toBeLessThan(1e-12);
    expect(orthonormalityError(svd.U)).toBeLessThan(1e-13);
    expect(() => thinSvd([new Float64Array(2), new Float64Array(2), new Float64Array(2)], 2)).toThrow(RangeError);
  });
});

describe("probe math on data with a known answer", () => {
  const known = knownLanguages({ seed: 1, d: 96, languages: LANGS, n: 12, offsetScale: 2 });
  const probe = probeLayerFromSamples(known.samples, known.d);

  it("M_s is orthonormal and spans the chosen language-specific basis", () => {
    expect(probe.rank).toBe(LANGS.length - 1);
    expect(orthonormalityError(probe.specific)).toBeLessThan(1e-10);
    expect(projectorDistance(probe.specific, known.specificBasis, known.d)).toBeLessThan(1e-10);
    // And it is orthogonal to the agnostic direction.
    for (const col of probe.specific) expect(Math.abs(dot(col, probe.agnosticUnit))).toBeLessThan(1e-10);
  });

  it("m_a satisfies its definition and equals the shared component", () => {
    // M'^T m_a(unnormalised) = 1, and the rescaling m_a = m / ||m||^2.
    for (const col of probe.fit) expect(Math.abs(dot(col, probe.agnosticSolution) - 1)).toBeLessThan(1e-10);
    const n2 = dot(probe.agnosticSolution, probe.agnosticSolution);
    expect(maxAbsDiff64(probe.agnostic, scaled(1 / n2, probe.agnosticSolution))).toBeLessThan(1e-12);
    expect(maxAbsDiff64(probe.agnostic, scaled(known.sharedScale, known.shared))).toBeLessThan(1e-10);
    expect(Math.abs(norm(probe.agnosticUnit) - 1)).toBeLessThan(1e-12);
  });

  it("means average the offsets out, M' = M at full rank, and Delta_l is the known shift", () => {
    probe.means.forEach((m, l) => expect(maxAbsDiff64(m, known.means[l]!)).toBeLessThan(1e-12));
    probe.fit.forEach((m, l) => expect(maxAbsDiff64(m, known.means[l]!)).toBeLessThan(1e-10));
    const en = LANGS.indexOf("en");
    LANGS.forEach((lang, l) => {
      const expected = new Float64Array(known.d);
      known.specificBasis.forEach((q, k) => {
        const w = known.coefficients[l]![k]! - known.coefficients[en]![k]!;
        for (let i = 0; i < known.d; i++) expected[i]! += w * q[i]!;
      });
      expect(maxAbsDiff64(probe.shifts[l]!, expected)).toBeLessThan(1e-10);
      // The definition, literally: mean of projected samples minus the central one's.
      const Ms = columnsToRowMajor(probe.specific, known.d);
      const projected = (xs: Float64Array[]) =>
        languageMean(
          xs.map((x) => projectRowMajor(Ms, probe.rank, x)),
          known.d,
        );
      const literal = projected(known.samples[lang]!).map((v, i) => v - projected(known.samples.en!)[i]!);
      expect(maxAbsDiff64(probe.shifts[l]!, literal)).toBeLessThan(1e-5); // float32 basis
      if (lang !== "en") expect(norm(probe.shifts[l]!)).toBeGreaterThan(0.1);
    });
  });

  it("does not depend on sample order or language order", () => {
    const reordered: Record<string, Float64Array[]> = {};
    for (const lang of [...LANGS].reverse()) reordered[lang] = shuffled(known.samples[lang]!, lang.length * 7 + 3);
    const other = probeLayerFromSamples(reordered, known.d);
    expect(projectorDistance(other.specific, probe.specific, known.d)).toBeLessThan(1e-12);
    expect(maxAbsDiff64(other.agnostic, probe.agnostic)).toBeLessThan(1e-12);
    for (const lang of LANGS) {
      expect(
        maxAbsDiff64(other.shifts[other.languages.indexOf(lang)]!, probe.shifts[probe.languages.indexOf(lang)]!),
      ).toBeLessThan(1e-12);
    }
  });

  it("a rank-r fit below L - 1 drops the small direction, and pinv drops M''s zero singular values", () => {
    const low = knownLanguages({ seed: 2, d: 64, languages: LANGS, n: 5, specificRank: 2, dropped: 0.05 });
    const p = probeLayerFromSamples(low.samples, low.d, { rank: 2 });
    expect(p.rank).toBe(2);
    // M' has rank r + 1 = 3 < L = 5: two singular values must be treated as zero.
    expect(p.singularValues.fit[3]!).toBeLessThan(1e-12);
    expect(p.singularValues.fit[2]!).toBeGreaterThan(0.1);
    expect(projectorDistance(p.specific, low.specificBasis, low.d)).toBeLessThan(1e-10);
    expect(maxAbsDiff64(p.agnostic, scaled(low.sharedScale, low.shared))).toBeLessThan(1e-10);
    for (const col of p.fit) expect(Math.abs(dot(col, p.agnosticSolution) - 1)).toBeLessThan(1e-10);
    // With r = L - 1 instead, the small direction is kept: the means span only 3 specific directions,
    // so M_s has 3 columns (not the 4 asked for), spanning the chosen basis plus the small direction.
    const full = probeLayerFromSamples(low.samples, low.d);
    expect(full.requestedRank).toBe(4);
    expect(full.rank).toBe(3);
    expect(projectorDistance(full.specific, [...low.specificBasis, low.droppedDirection], low.d)).toBeLessThan(1e-10);
    expect(Math.abs(Math.abs(dot(full.specific[2]!, low.droppedDirection)) - 1)).toBeLessThan(1e-10);
  });

  it("reports a lower rank when languages are indistinguishable, and rejects bad input", () => {
    const same = knownLanguages({ seed: 3, d: 32, languages: ["en", "sw", "zh"], n: 2 });
    const means = { en: same.means[0]!, sw: same.means[1]!, zh: same.means[1]! };
    const p = fitLanguageSubspaces(means);
    expect(p.rank).toBe(1);
    expect(orthonormalityError(p.specific)).toBeLessThan(1e-12);
    expect(() => fitLanguageSubspaces({ en: same.means[0]! })).toThrow(RangeError);
    expect(() => fitLanguageSubspaces({ sw: same.means[0]!, zh: same.means[1]! })).toThrow(/central/);
    expect(() => fitLanguageSubspaces(means, { rank: 3 })).toThrow(RangeError);
  });
});

describe("closed-form subspace edit", () => {
  const known = knownLanguages({ seed: 4, d: 80, languages: LANGS, n: 3 });
  const probe = probeLayerFromSamples(known.samples, known.d);
  const d = known.d;
  const Ms = columnsToRowMajor(probe.specific, d);
  const sw = probe.shifts[LANGS.indexOf("sw")]!;

  /** h + (h A) B + b in float32 arithmetic order as the backend's hook applies it (float64 here). */
  function apply(
    h: Float64Array,
    e: { A: Float32Array; B: Float32Array; b: Float32Array; rank: number },
  ): Float64Array {
    const hA = new Float64Array(e.rank);
    for (let i = 0; i < d; i++) for (let j = 0; j < e.rank; j++) hA[j]! += h[i]! * e.A[i * e.rank + j]!;
    return Float64Array.from(h, (v, i) => {
      let x = v + e.b[i]!;
      for (let j = 0; j < e.rank; j++) x += hA[j]! * e.B[j * d + i]!;
      return x;
    });
  }

  it("lambda = 1, alpha = 0 removes the M_s component", () => {
    const edit = subspaceEdit(Ms, probe.rank, sw, 1, 0);
    const rand = seeded(5);
    for (let t = 0; t < 5; t++) {
      const h = Float64Array.from({ length: d }, () => 10 * rand());
      const before = projectRowMajor(Ms, probe.rank, h);
      expect(norm(before)).toBeGreaterThan(1);
      const after = projectRowMajor(Ms, probe.rank, apply(h, edit));
      expect(Math.max(...after.map(Math.abs))).toBeLessThan(1e-5);
    }
  });

  it("with alpha > 0 the M_s component becomes alpha P_s Delta_l; lambda = 0.5 halves it", () => {
    const alpha = 1.7;
    const edit = subspaceEdit(Ms, probe.rank, sw, 1, alpha);
    const target = scaled(alpha, projectRowMajor(Ms, probe.rank, sw));
    const half = subspaceEdit(Ms, probe.rank, sw, 0.5, 0);
    const rand = seeded(6);
    for (let t = 0; t < 5; t++) {
      const h = Float64Array.from({ length: d }, () => 10 * rand());
      expect(maxAbsDiff64(projectRowMajor(Ms, probe.rank, apply(h, edit)), target)).toBeLessThan(1e-5);
      const p = projectRowMajor(Ms, probe.rank, h);
      expect(maxAbsDiff64(projectRowMajor(Ms, probe.rank, apply(h, half)), scaled(0.5, p))).toBeLessThan(1e-5);
      // Outside M_s nothing moves.
      const outside = (x: Float64Array) => x.map((v, i) => v - projectRowMajor(Ms, probe.rank, x)[i]!);
      expect(maxAbsDiff64(outside(apply(h, edit)), outside(h))).toBeLessThan(1e-5);
    }
  });

  it("lays A, B, b out as the delta format does, padding extra rank with zeros", () => {
    const edit = subspaceEdit(Ms, probe.rank, sw, 2, 3, probe.rank + 2);
    const R = probe.rank + 2;
    expect(edit.A.length).toBe(d * R);
    expect(edit.B.length).toBe(R * d);
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < probe.rank; j++) {
        expect(edit.A[i * R + j]).toBe(Ms[i * probe.rank + j]);
        expect(edit.B[j * d + i]).toBe(Math.fround(-2 * Ms[i * probe.rank + j]!));
      }
      expect(edit.A[i * R + probe.rank]).toBe(0);
      expect(edit.B[(probe.rank + 1) * d + i]).toBe(0);
      expect(edit.b[i]).toBe(Math.fround(3 * sw[i]!));
    }
    expect(() => subspaceEdit(Ms, probe.rank, sw, Number.NaN, 0)).toThrow(RangeError);
  });
});

/** One thread per session: the tests share 2 cores with whatever else runs. */
const SESSION_OPTIONS = { intraOpNumThreads: 1, interOpNumThreads: 1 };

/** Prompts of different lengths and scripts, so a batch needs padding (no data files needed). */
const MIXED_PROMPTS = [
  "Hi",
  "Reverses the value of the argument.",
  "Kila mtu ana haki ya kuishi.",
  "对参数值求反。",
  "Invierte el valor del argumento y devuelve el resultado.",
];

/** Longer than 64 tokens with either tokenizer, with multi-byte characters near any cut. */
const LONG_PROMPT = "Kila mtu ana haki ya uhuru wa mawazo — 人人生而自由，在尊严和权利上一律平等。 ".repeat(6);

describe.each(MODEL_CASES)("probe prompts and last-token hidden states on $name", ({ dir, skip }) => {
  let collector: HiddenStateCollector;
  let fp16 = false;
  beforeAll(async () => {
    if (skip !== null) return;
    const info = readModelDir(dir);
    collector = await HiddenStateCollector.create(
      { info, tokenizer: ChatTokenizer.fromDir(dir) },
      Array.from({ length: info.numLayers }, (_, l) => l),
      { batchSize: 3, sessionOptions: SESSION_OPTIONS },
    );
    fp16 =
      describeResidualStream(readBytes(info.onnxPath), { numLayers: info.numLayers, hiddenSize: info.hiddenSize })
        .dtype === "float16";
  });
  afterAll(async () => {
    await collector?.release();
  });

  it.skipIf(skip !== null)("keeps the chat frame and the start of the text when cutting to 64 tokens", () => {
    const tok = collector.tokenizer;
    const user = (content: string) => tok.promptIds([{ role: "user", content }]);
    const full = user(LONG_PROMPT);
    expect(full.length).toBeGreaterThan(64);
    const cut = probePromptIds(tok, LONG_PROMPT);
    expect(cut.length).toBeLessThanOrEqual(64);
    // The longest prefix (in code points) that fits, found here by a plain linear scan.
    const points = Array.from(LONG_PROMPT);
    let k = 0;
    while (k < points.length && user(points.slice(0, k + 1).join("")).length <= 64) k++;
    expect(k).toBeGreaterThan(0);
    expect(cut).toEqual(user(points.slice(0, k).join("")));
    // Same end as the whole prompt (the generation prompt), same start.
    // (The last 3 tokens are the end of turn and generation prompt with either template.)
    expect(cut.slice(-3)).toEqual(full.slice(-3));
    expect(cut.slice(0, 4)).toEqual(full.slice(0, 4));
    // "head" is the reference's cut: the first 64 tokens.
    expect(probePromptIds(tok, LONG_PROMPT, { truncation: "head" })).toEqual(full.slice(0, 64));
    // Short prompts are left alone; a different limit applies.
    expect(probePromptIds(tok, MIXED_PROMPTS[1]!)).toEqual(user(MIXED_PROMPTS[1]!));
    expect(probePromptIds(tok, LONG_PROMPT, { maxPromptTokens: 40 }).length).toBeLessThanOrEqual(40);
  });

  it.skipIf(skip !== null)("batched (left-padded) states equal one-prompt-at-a-time states", async () => {
    const prompts = [...MIXED_PROMPTS, LONG_PROMPT, MIXED_PROMPTS[1]!];
    const batched = await collector.collect(prompts);
    const d = collector.info.hiddenSize;
    for (const layer of collector.layers) {
      const rows = batched.byLayer.get(layer)!;
      const scale = Math.max(...Array.from(rows, Math.abs));
      // fp32: a few float rounding steps; fp16: a few ulps of the largest value.
      const tol = (fp16 ? 8 * 2 ** -10 : 1e-5) * scale;
      for (let i = 0; i < prompts.length; i++) {
        const alone = (await collector.forward([collector.promptIds(prompts[i]!)])).hidden.get(layer)!;
        expect(maxAbsDiff64(rows.subarray(i * d, (i + 1) * d), alone)).toBeLessThanOrEqual(tol);
      }
      // Different prompts give states further apart than the tolerance (so the comparison above could
      // fail); the fp16 fixture's random weights keep its states close, hence only a small factor.
      expect(maxAbsDiff64(rows.subarray(0, d), rows.subarray(d, 2 * d))).toBeGreaterThan(4 * tol);
    }
  });

  it.skipIf(skip !== null)(
    "exposing the hidden states leaves the logits as the unedited model gives them",
    async () => {
      const { info } = collector;
      const bytes = readBytes(info.onnxPath);
      const plain = insertDeltaHooks(
        bytes,
        { deltaLayers: [] },
        { numLayers: info.numLayers, hiddenSize: info.hiddenSize },
      );
      const base = await sessionFromBytes(plain.bytes, info.onnxPath, plain.externalData);
      try {
        for (const text of [MIXED_PROMPTS[1]!, MIXED_PROMPTS[3]!]) {
          const ids = collector.promptIds(text);
          const out = await base.run(firstCallFeeds(info, fp16 ? "float16" : "float32", [ids]));
          const all = floatValues(out[info.io.logits]!);
          const vocab = all.length / ids.length;
          const expected = all.subarray((ids.length - 1) * vocab);
          const got = (await collector.forward([ids], true)).logits!;
          const scale = Math.max(...Array.from(expected, Math.abs));
          expect(maxAbsDiff64(got, expected)).toBeLessThanOrEqual(fp16 ? 4 * 2 ** -10 * scale : 0);
        }
      } finally {
        await base.release();
      }
    },
  );
});

const embedded = MODEL_CASES[0]!;
const endToEndSkip = embedded.skip ?? lensPromptsSkip;

describe.skipIf(endToEndSkip !== null)("end-to-end probe on the embedded model", () => {
  const languages = ["en", "sw", "zh", "es"];
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "lens-probe-"));
  });
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("probes, saves and loads the artifact identically, and makes subspace deltas that validate and edit as designed", async () => {
    const dir = embedded.dir;
    const info = readModelDir(dir);
    const prompts = parallelPrompts("probe", languages, 8);
    const collector = await HiddenStateCollector.create({ info, tokenizer: ChatTokenizer.fromDir(dir) }, [2, 3], {
      sessionOptions: SESSION_OPTIONS,
    });
    try {
      const p = await probe(collector, prompts, [2, 3], "en");
      const fingerprint = await modelFingerprint(info.onnxPath);
      expect(p.baseModel).toEqual({ id: info.id, fingerprint });
      expect(p.counts).toEqual({ en: 8, sw: 8, zh: 8, es: 8 });
      expect(p.layers.map((l) => l.layer)).toEqual([2, 3]);
      const d = info.hiddenSize;
      for (const l of p.layers) {
        expect(l.rank).toBe(3);
        const cols: Columns = Array.from({ length: l.rank }, (_, j) =>
          Float64Array.from({ length: d }, (_, i) => l.M_s[i * l.rank + j]!),
        );
        expect(orthonormalityError(cols)).toBeLessThan(1e-6);
        expect(Math.max(...Array.from(l.deltas.en!, Math.abs))).toBe(0);
        expect(norm(l.deltas.sw!)).toBeGreaterThan(0);
      }
      // The means are the means of what the collector gives, computed here independently.
      const sw = await collector.collect(prompts.sw!);
      const rows = sw.byLayer.get(3)!;
      const mean = Float64Array.from({ length: d }, (_, i) => {
        let s = 0;
        for (let r = 0; r < sw.count; r++) s += rows[r * d + i]!;
        return s / sw.count;
      });
      const layer3 = p.layers[1]!;
      expect(maxAbsDiff64(layer3.means.subarray(d, 2 * d), mean)).toBeLessThan(1e-6);

      // Save, load back: identical, bit for bit; no temporary files left behind.
      const files = saveProbe(p, work);
      expect(readdirSync(work).sort()).toEqual([`${p.id}.json`, `${p.id}.safetensors`]);
      const back = loadProbe(work, p.id);
      expect(back).toEqual(p);
      for (const [i, l] of back.layers.entries()) {
        expect(
          Buffer.from(l.M_s.buffer, l.M_s.byteOffset, l.M_s.byteLength).equals(Buffer.from(p.layers[i]!.M_s.buffer)),
        ).toBe(true);
      }
      // A tensors file that does not match its manifest is refused.
      const bytes = readFileSync(files.tensorsPath);
      bytes[bytes.length - 1]! ^= 1;
      const other = mkdtempSync(join(tmpdir(), "lens-probe-bad-"));
      try {
        writeFileSync(join(other, `${p.id}.safetensors`), bytes);
        writeFileSync(join(other, `${p.id}.json`), readFileSync(files.manifestPath));
        expect(() => loadProbe(other, p.id)).toThrow(/does not match/);
      } finally {
        rmSync(other, { recursive: true, force: true });
      }

      // Deltas from the loaded probe validate against the model.
      const expect_ = { fingerprint, hiddenSize: d, numLayers: info.numLayers, maxBytes: 1 << 24 };
      const both = subspaceDelta(back, { language: "sw", layers: [2, 3], lambda: 1, alpha: 0.5, dtype: "float16" });
      const checked = validateDelta(both.bytes, both.manifest, expect_);
      expect(checked.ok).toBe(true);
      expect(both.manifest).toMatchObject({
        kind: "subspace",
        language: "sw",
        layers: [2, 3],
        rank: 3,
        method: { lambda: 1, alpha: 0.5, probe: p.id },
      });
      expect(
        validateDelta(
          both.bytes,
          { ...both.manifest, base_model: { id: info.id, fingerprint: `sha256:${"0".repeat(64)}` } },
          expect_,
        ).ok,
      ).toBe(false);
      expect(() => subspaceDelta(back, { language: "ja", layers: [3], lambda: 1, alpha: 0 })).toThrow(/no "ja"/);
      expect(() => subspaceDelta(back, { language: "sw", layers: [1], lambda: 1, alpha: 0 })).toThrow(/not probed/);

      // Applied by the graph's hook at layer 3: lambda = 1, alpha = 0 leaves no M_s component in the
      // stream there; alpha = 1 leaves exactly Delta_sw.
      const graph = insertDeltaHooks(
        readBytes(info.onnxPath),
        { deltaLayers: [3], exposeHidden: [3] },
        { numLayers: info.numLayers, hiddenSize: d },
      );
      const session = await sessionFromBytes(graph.bytes, info.onnxPath, graph.externalData);
      try {
        const ids = collector.promptIds(prompts.sw![0]!);
        for (const alpha of [0, 1]) {
          const file = subspaceDelta(back, { language: "sw", layers: [3], lambda: 1, alpha });
          const decoded = validateDelta(file.bytes, file.manifest, expect_);
          if (!decoded.ok) throw new Error(decoded.error.message);
          const edit = decoded.delta.layers.get(3)!;
          const feeds = {
            ...firstCallFeeds(info, "float32", [ids]),
            ...deltaFeeds(
              "float32",
              graph.deltaInputs[0]!,
              {
                rank: edit.rank,
                a: Float64Array.from(edit.A),
                b: Float64Array.from(edit.B),
                bias: Float64Array.from(edit.b),
              },
              1,
              d,
            ),
          };
          const out = await session.run(feeds);
          const h = floatValues(out[graph.hiddenOutputs[0]!.name]!);
          const target =
            alpha === 0 ? new Float64Array(d) : projectRowMajor(layer3.M_s, layer3.rank, layer3.deltas.sw!);
          for (let t = 0; t < ids.length; t++) {
            const ht = h.subarray(t * d, (t + 1) * d);
            expect(maxAbsDiff64(projectRowMajor(layer3.M_s, layer3.rank, ht), target)).toBeLessThan(
              1e-5 * Math.max(1, ...Array.from(ht, Math.abs)),
            );
          }
        }
      } finally {
        await session.release();
      }
    } finally {
      await collector.release();
    }
  }, 120_000);
});
