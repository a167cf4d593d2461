/**
 * Lens probe: the math on synthetic data with a known answer, the SVD it rests on, the closed-form
 * subspace edit, hidden-state collection on real exports, and an end-to-end probe -> artifact -> delta.
 */
import { describe, expect, it } from "vitest";
import { dot, norm, orthonormalityError, scaled, thinSvd, type Columns } from "../../src/gpu-backend/lens/linalg";
import {
  columnsToRowMajor,
  fitLanguageSubspaces,
  languageMean,
  probeLayerFromSamples,
  projectRowMajor,
  subspaceEdit,
} from "../../src/gpu-backend/lens/probe-math";
import { seeded } from "./helpers-delta";
import { knownLanguages, maxAbsDiff64, projectorDistance, randomOrthonormal, shuffled } from "./lens-synthetic";

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
      const projected = (xs: Float64Array[]) => languageMean(xs.map((x) => projectRowMajor(Ms, probe.rank, x)), known.d);
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
      expect(maxAbsDiff64(other.shifts[other.languages.indexOf(lang)]!, probe.shifts[probe.languages.indexOf(lang)]!)).toBeLessThan(1e-12);
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
  function apply(h: Float64Array, e: { A: Float32Array; B: Float32Array; b: Float32Array; rank: number }): Float64Array {
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
