/**
 * Synthetic language data with a known Lens answer, for the probe math tests.
 *
 * Construction (q_0..q_K orthonormal, K = L - 1):
 *   m_l = c q_0 + sum_k C[l][k] q_k        with the columns of C summing to zero over languages,
 *   e_l^i = m_l + o_l^i                    with offsets that sum to zero exactly over i.
 * Then mu = c q_0, M - mu 1^T = Q_s C^T, so for r = rank(C): M' = M (up to the dropped directions),
 * M'^T (q_0 / c) = 1 with q_0 / c in M's column space (1 is orthogonal to C's columns), hence
 * pinv(M')^T 1 = q_0 / c, m_a = c q_0, and M' - m_a 1^T = Q_s C^T: M_s spans the chosen q_1..q_r and
 * Delta_l = Q_s (C[l] - C[central]).
 * An optional small extra direction q_{r+1}, with coefficients across languages orthogonal to 1 and to
 * C's columns, is what a rank-r fit must drop (its singular value is kept below C's).
 */
import { axpy, dot, norm, scaled, type Columns } from "../../src/gpu-backend/lens/linalg.js";
import { seeded } from "./helpers-delta.js";

/** k orthonormal random vectors of length d (Gram-Schmidt twice on seeded uniform vectors). */
export function randomOrthonormal(rand: () => number, d: number, k: number): Columns {
  const q: Columns = [];
  while (q.length < k) {
    const v = Float64Array.from({ length: d }, rand);
    for (let pass = 0; pass < 2; pass++) for (const u of q) axpy(-dot(u, v), u, v);
    const n = norm(v);
    if (n > 1e-3) q.push(scaled(1 / n, v));
  }
  return q;
}

export interface KnownLanguages {
  languages: string[];
  d: number;
  /** The shared direction q_0 and its coefficient c: the expected m_a is c q_0. */
  shared: Float64Array;
  sharedScale: number;
  /** q_1..q_K: the expected M_s spans the first `specificRank` of them. */
  specificBasis: Columns;
  specificRank: number;
  /** q_{r+1}: the optional small direction a rank-r fit drops. */
  droppedDirection: Float64Array;
  /** C[l][k]: coefficient of language l on q_{k+1}; columns sum to zero. */
  coefficients: number[][];
  means: Float64Array[];
  samples: Record<string, Float64Array[]>;
}

export interface KnownOptions {
  seed: number;
  d: number;
  languages: string[];
  /** Samples per language. */
  n: number;
  /** Rank of the language-specific part (default L - 1). */
  specificRank?: number;
  /** A small extra direction q_{r+1} with this scale, which a rank-r fit must drop (default 0). */
  dropped?: number;
  /** Scale of the per-sample offsets (they cancel in the mean). */
  offsetScale?: number;
  sharedScale?: number;
}

export function knownLanguages(o: KnownOptions): KnownLanguages {
  const rand = seeded(o.seed);
  const L = o.languages.length;
  const r = o.specificRank ?? L - 1;
  const c = o.sharedScale ?? 3;
  const q = randomOrthonormal(rand, o.d, L + 1);
  const shared = q[0]!;
  const specificBasis = q.slice(1, r + 1);
  const extra = q[r + 1]!;

  // Random coefficients, then centred per column so mu = c q_0 exactly as constructed.
  const coefficients = o.languages.map(() => Array.from({ length: r }, () => 2 * rand()));
  for (let k = 0; k < r; k++) {
    const mean = coefficients.reduce((s, row) => s + row[k]!, 0) / L;
    for (const row of coefficients) row[k]! -= mean;
  }
  // The dropped direction's coefficients across languages: orthogonal to 1 and to C's columns, so
  // it is its own singular pair (left q_{r+1}, right droppedCoeff) and a rank-r fit drops it exactly.
  const droppedCoeff = Float64Array.from(o.languages, () => rand());
  const across: Float64Array[] = [new Float64Array(L).fill(1 / Math.sqrt(L))];
  for (let k = 0; k < r; k++) {
    const col = Float64Array.from(coefficients, (row) => row[k]!);
    for (let pass = 0; pass < 2; pass++) for (const u of across) axpy(-dot(u, col), u, col);
    across.push(scaled(1 / norm(col), col));
  }
  for (let pass = 0; pass < 2; pass++) for (const u of across) axpy(-dot(u, droppedCoeff), u, droppedCoeff);

  const means = o.languages.map((_, l) => {
    const m = scaled(c, shared);
    coefficients[l]!.forEach((x, k) => axpy(x, specificBasis[k]!, m));
    if (o.dropped) axpy(o.dropped * droppedCoeff[l]!, extra, m);
    return m;
  });

  const samples: Record<string, Float64Array[]> = {};
  o.languages.forEach((lang, l) => {
    const offsets = Array.from({ length: o.n - 1 }, () =>
      Float64Array.from({ length: o.d }, () => (o.offsetScale ?? 1) * rand()),
    );
    const last = new Float64Array(o.d);
    for (const off of offsets) axpy(-1, off, last);
    offsets.push(last);
    samples[lang] = offsets.map((off) => axpy(1, means[l]!, Float64Array.from(off)));
  });
  return {
    languages: o.languages,
    d: o.d,
    shared,
    sharedScale: c,
    specificBasis,
    specificRank: r,
    droppedDirection: extra,
    coefficients,
    means,
    samples,
  };
}

/** max |P_X - P_Y| entrywise, for orthonormal column sets X and Y (0 iff they span the same space). */
export function projectorDistance(x: Columns, y: Columns, d: number): number {
  let worst = 0;
  const px = new Float64Array(d);
  const py = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    px.fill(0);
    py.fill(0);
    // Column i of each projector: X (X^T e_i).
    for (const col of x) axpy(col[i]!, col, px);
    for (const col of y) axpy(col[i]!, col, py);
    for (let j = 0; j < d; j++) worst = Math.max(worst, Math.abs(px[j]! - py[j]!));
  }
  return worst;
}

export function maxAbsDiff64(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Fisher-Yates with a seeded generator: a reordering that still holds the same samples. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const rand = seeded(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(((rand() + 1) / 2) * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
