/**
 * The little dense linear algebra the Lens probe needs, in float64 and without dependencies.
 *
 * Every matrix here is tall and thin: d x L with d the hidden size (up to a few thousand) and L the
 * number of languages (about 20 at most). Such a matrix is held as its L columns (`Columns`, one
 * Float64Array of length d each), which is what the probe has anyway (one mean vector per language)
 * and what a Jacobi rotation touches.
 *
 * The SVD is cyclic Jacobi on the L x L Gram matrix X^T X, applied implicitly to X's columns
 * (one-sided Jacobi, Hestenes): each rotation diagonalises one 2 x 2 block of the Gram matrix, computed
 * from the two columns it rotates. Forming X^T X explicitly would square the condition number, so a
 * singular value below about 1e-8 of the largest would drown in rounding; rotating the columns keeps
 * every singular value to about machine precision times the largest, which is what lets `pinv` use a
 * tight, numpy-like tolerance. Cost per sweep: L^2/2 pairs x 3 dot products of length d.
 */

/** A d x L matrix as its L columns, each of length d. */
export type Columns = Float64Array[];

/** Machine epsilon of float64. */
const EPS = 2 ** -52;

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export function norm(a: ArrayLike<number>): number {
  return Math.sqrt(dot(a, a));
}

/** y <- y + alpha x, in place; returns y. */
export function axpy(alpha: number, x: ArrayLike<number>, y: Float64Array): Float64Array {
  for (let i = 0; i < y.length; i++) y[i]! += alpha * x[i]!;
  return y;
}

export function scaled(alpha: number, x: ArrayLike<number>): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = alpha * x[i]!;
  return out;
}

/** X c for X given by columns and a coefficient per column. */
export function combine(columns: Columns, coefficients: ArrayLike<number>, rows: number): Float64Array {
  const out = new Float64Array(rows);
  columns.forEach((col, j) => axpy(coefficients[j]!, col, out));
  return out;
}

/** X^T y: one dot product per column. */
function transposeTimes(columns: Columns, y: ArrayLike<number>): Float64Array {
  return Float64Array.from(columns, (col) => dot(col, y));
}

/** Orthogonal projection of x on the span of orthonormal columns Q: Q (Q^T x). */
export function project(q: Columns, x: ArrayLike<number>): Float64Array {
  return combine(q, transposeTimes(q, x), x.length);
}

export interface ThinSvd {
  /** Left singular vectors, one per column of X (orthonormal; see `completed`). */
  U: Columns;
  /** Singular values, descending. */
  S: Float64Array;
  /** Right singular vectors (L columns of length L, orthonormal). */
  V: Columns;
  /**
   * How many trailing U columns were not defined by X (singular value at or below `tolerance`) and
   * were filled in to complete an orthonormal set. They are orthonormal but otherwise arbitrary.
   */
  completed: number;
  /** The threshold used for `completed` and for `numericalRank`. */
  tolerance: number;
}

/**
 * Default relative tolerance for "this singular value is zero": max(d, L) * eps * s_max, as numpy's
 * `pinv`/`matrix_rank` use. Sound here because one-sided Jacobi gets every singular value to about
 * eps * s_max absolute.
 */
function defaultTolerance(sMax: number, rows: number, cols: number): number {
  return Math.max(rows, cols) * EPS * sMax;
}

/** Number of singular values above the tolerance. */
export function numericalRank(svd: ThinSvd): number {
  let r = 0;
  while (r < svd.S.length && svd.S[r]! > svd.tolerance) r++;
  return r;
}

const MAX_SWEEPS = 60;
/** A pair is orthogonal enough when |x_p . x_q| <= this * ||x_p|| ||x_q||. */
const ORTHOGONALITY = 4 * EPS;

/**
 * Thin SVD X = U diag(S) V^T of a d x L matrix (d >= L) given by columns.
 * `relativeTolerance`, when given, replaces the default zero threshold with relativeTolerance * s_max.
 * Signs are fixed (each U column's largest-magnitude entry is positive) so the result does not depend
 * on how rotations happened to go.
 */
export function thinSvd(x: Columns, rows: number, relativeTolerance?: number): ThinSvd {
  const L = x.length;
  if (L === 0) throw new RangeError("thinSvd: no columns");
  if (rows < L) throw new RangeError(`thinSvd: needs rows >= columns, got ${rows} x ${L}`);
  for (const col of x)
    if (col.length !== rows) throw new RangeError(`thinSvd: a column has ${col.length} entries, expected ${rows}`);

  const w = x.map((col) => Float64Array.from(col));
  const v = Array.from({ length: L }, (_, j) => {
    const e = new Float64Array(L);
    e[j] = 1;
    return e;
  });

  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let rotated = false;
    for (let p = 0; p < L - 1; p++) {
      for (let q = p + 1; q < L; q++) {
        const wp = w[p]!;
        const wq = w[q]!;
        const alpha = dot(wp, wp);
        const beta = dot(wq, wq);
        const gamma = dot(wp, wq);
        if (gamma === 0 || Math.abs(gamma) <= ORTHOGONALITY * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        // The rotation that zeroes the (p, q) entry of the Gram matrix, smaller angle of the two.
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        rotate(wp, wq, c, s);
        rotate(v[p]!, v[q]!, c, s);
      }
    }
    if (!rotated) break;
  }

  // Sort by singular value, descending (index order breaks ties, so the result is deterministic).
  const sv = w.map(norm);
  const order = sv.map((_, j) => j).sort((i, j) => sv[j]! - sv[i]! || i - j);
  const S = Float64Array.from(order, (j) => sv[j]!);
  const sMax = S[0]!;
  const tolerance = relativeTolerance === undefined ? defaultTolerance(sMax, rows, L) : relativeTolerance * sMax;

  const U: Columns = [];
  const V: Columns = [];
  let completed = 0;
  for (let k = 0; k < L; k++) {
    const j = order[k]!;
    let u: Float64Array;
    if (S[k]! > tolerance && S[k]! > 0) {
      u = scaled(1 / S[k]!, w[j]!);
    } else {
      u = orthonormalComplement(U, rows);
      completed++;
    }
    let vj: Float64Array = v[j]!;
    const sign = signOfLargest(u);
    if (sign < 0) {
      u = scaled(-1, u);
      vj = scaled(-1, vj);
    }
    U.push(u);
    V.push(vj);
  }
  return { U, S, V, completed, tolerance };
}

function rotate(a: Float64Array, b: Float64Array, c: number, s: number): void {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    a[i] = c * x - s * y;
    b[i] = s * x + c * y;
  }
}

function signOfLargest(u: ArrayLike<number>): number {
  let best = 0;
  for (let i = 0; i < u.length; i++) if (Math.abs(u[i]!) > Math.abs(best)) best = u[i]!;
  return best < 0 ? -1 : 1;
}

/**
 * A unit vector orthogonal to the given orthonormal columns: the standard basis vector with the
 * largest residual after projecting them out (twice, for orthogonality to rounding). Deterministic.
 */
function orthonormalComplement(q: Columns, rows: number): Float64Array {
  if (q.length >= rows) throw new RangeError("orthonormalComplement: the columns already span the space");
  let best: Float64Array | null = null;
  let bestNorm = -1;
  for (let i = 0; i < rows; i++) {
    const e = new Float64Array(rows);
    e[i] = 1;
    for (let pass = 0; pass < 2; pass++) for (const col of q) axpy(-dot(col, e), col, e);
    const n = norm(e);
    if (n > bestNorm) {
      best = e;
      bestNorm = n;
    }
    // Any residual above 1/sqrt(2) is as good as the best to expect; stop early on big d.
    if (bestNorm > Math.SQRT1_2) break;
  }
  return scaled(1 / bestNorm, best!);
}

/** max |Q^T Q - I| over the entries: how far columns are from orthonormal. */
export function orthonormalityError(q: Columns): number {
  let worst = 0;
  for (let i = 0; i < q.length; i++) {
    for (let j = i; j < q.length; j++) {
      worst = Math.max(worst, Math.abs(dot(q[i]!, q[j]!) - (i === j ? 1 : 0)));
    }
  }
  return worst;
}
