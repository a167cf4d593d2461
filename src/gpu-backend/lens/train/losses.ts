/**
 * The Lens manipulation losses (docs/design.md, "Lens, exactly") for a delta h = h0 + (h0 A) B + b applied at
 * the top layer, with their gradients in closed form. float64 throughout.
 *
 * At the last decoder layer the edited state is an affine function of the unedited one, so every loss
 * is a polynomial in (A, B, b) over stored states h0 and no backpropagation through the model is needed.
 * With MSE(u, v) = mean over rows and hidden units of (u - v)^2 (torch's nn.MSELoss default, as the
 * reference uses), N rows and d = hidden size:
 *
 *   retain = w_r / (N d) sum_n || xbar_n A B + b ||^2
 *            xbar_n = mean over positions of h0 for central-language prompt n. The mean of the edited
 *            states is the edit of the mean (the edit is affine), and h_ref = h0, so the difference is
 *            xbar_n A B + b.
 *   push   = 1 / (N d) sum_n || P_s (x_n A B + b) - alpha Delta_l ||^2
 *            x_n = h0 at the last token of target prompt n; P_s = M_s M_s^T. P_s h - P_s h_ref is
 *            P_s (x A B + b).
 *   align  = w_a / (N d) sum_n ||a||^2 (a . (z_n + z_n A B))^2
 *            z_n = h0(x_en, last) - h0(x_l, last) for the parallel pair n: P_a h_en - P_a h_l =
 *            a (a . (h_en - h_l)) and b cancels in the difference.
 *
 * Each term is f(U) with U = X A B (+ b): for G = dL/dU (one row per input row),
 *   dL/dA = X^T (G B^T),   dL/dB = (X A)^T G,   dL/db = sum_n G_n (where b is in U).
 *
 * Every value reported per term is its weighted contribution to the total; `mse` holds the bare MSEs.
 */

/** A delta's parameters while training: A [d x rank] as A[i*rank+j], B [rank x d] as B[j*d+i], b [d]. */
export interface EditParams {
  rank: number;
  A: Float64Array;
  B: Float64Array;
  b: Float64Array;
}

/** Everything the losses need, fixed for a training run (rows row-major, [count x hiddenSize]). */
export interface LensLossProblem {
  hiddenSize: number;
  /** xbar_n: central-language prompts, h0 averaged over token positions. */
  retainRows: Float64Array;
  /** x_n: target-language prompts, h0 at the last token. */
  pushRows: Float64Array;
  /** z_n: h0(central, last) - h0(target, last), parallel pairs. */
  alignRows: Float64Array;
  /** M_s row-major [hiddenSize x basisRank], orthonormal columns. */
  basis: Float64Array;
  basisRank: number;
  /** a = m_a / ||m_a||. */
  agnostic: Float64Array;
  /** Delta_l of the target language. */
  shift: Float64Array;
  alpha: number;
  retainWeight: number;
  alignWeight: number;
}

export type LossTerm = "retain" | "push" | "align";
export const LOSS_TERMS: readonly LossTerm[] = ["retain", "push", "align"];

export interface TermValue {
  /** Weighted contribution to the total. */
  value: number;
  /** The bare MSE (before the term's weight). */
  mse: number;
  grad?: EditParams;
}

export interface LossValues {
  total: number;
  retain: number;
  push: number;
  align: number;
  mse: { retain: number; push: number; align: number };
}

export interface LossWithGradient extends LossValues {
  grad: EditParams;
}

function zeroParams(hiddenSize: number, rank: number): EditParams {
  return {
    rank,
    A: new Float64Array(hiddenSize * rank),
    B: new Float64Array(rank * hiddenSize),
    b: new Float64Array(hiddenSize),
  };
}

/** Rows of X through the edit's low-rank part: XA [n x rank] and U = X A B (+ b) [n x d]. */
function throughEdit(
  X: Float64Array,
  d: number,
  p: EditParams,
  withBias: boolean,
): { n: number; XA: Float64Array; U: Float64Array } {
  const r = p.rank;
  const n = X.length / d;
  const XA = new Float64Array(n * r);
  const U = new Float64Array(n * d);
  for (let row = 0; row < n; row++) {
    const x = row * d;
    const y = row * r;
    for (let i = 0; i < d; i++) {
      const xi = X[x + i]!;
      if (xi === 0) continue;
      for (let j = 0; j < r; j++) XA[y + j]! += xi * p.A[i * r + j]!;
    }
    for (let j = 0; j < r; j++) {
      const c = XA[y + j]!;
      if (c === 0) continue;
      for (let i = 0; i < d; i++) U[x + i]! += c * p.B[j * d + i]!;
    }
    if (withBias) for (let i = 0; i < d; i++) U[x + i]! += p.b[i]!;
  }
  return { n, XA, U };
}

/** The chain rule through U = X A B (+ b), accumulated into `grad`. */
function backThroughEdit(
  X: Float64Array,
  XA: Float64Array,
  G: Float64Array,
  d: number,
  p: EditParams,
  withBias: boolean,
  grad: EditParams,
): void {
  const r = p.rank;
  const n = X.length / d;
  const GBt = new Float64Array(r);
  for (let row = 0; row < n; row++) {
    const x = row * d;
    const y = row * r;
    GBt.fill(0);
    for (let j = 0; j < r; j++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += G[x + i]! * p.B[j * d + i]!;
      GBt[j] = s;
      const c = XA[y + j]!;
      for (let i = 0; i < d; i++) grad.B[j * d + i]! += c * G[x + i]!;
    }
    for (let i = 0; i < d; i++) {
      const xi = X[x + i]!;
      for (let j = 0; j < r; j++) grad.A[i * r + j]! += xi * GBt[j]!;
    }
    if (withBias) for (let i = 0; i < d; i++) grad.b[i]! += G[x + i]!;
  }
}

/** P_s v = M_s (M_s^T v) for one d-vector at `offset` of `v`, written to `out` at `offset`. */
function projectSpecific(q: LensLossProblem, v: Float64Array, offset: number, out: Float64Array): void {
  const d = q.hiddenSize;
  const s = q.basisRank;
  for (let i = 0; i < d; i++) out[offset + i] = 0;
  for (let j = 0; j < s; j++) {
    let c = 0;
    for (let i = 0; i < d; i++) c += q.basis[i * s + j]! * v[offset + i]!;
    for (let i = 0; i < d; i++) out[offset + i]! += c * q.basis[i * s + j]!;
  }
}

function rowCount(rows: Float64Array, d: number, what: string): number {
  const n = rows.length / d;
  if (!Number.isInteger(n) || n === 0)
    throw new RangeError(`${what}: ${rows.length} values are not a positive number of rows of ${d}`);
  return n;
}

/** One term's weighted value, bare MSE and (when asked) gradient. */
export function lossTerm(term: LossTerm, p: EditParams, q: LensLossProblem, withGrad: boolean): TermValue {
  const d = q.hiddenSize;
  const grad = withGrad ? zeroParams(d, p.rank) : undefined;
  if (term === "retain") {
    const X = q.retainRows;
    const n = rowCount(X, d, "retainRows");
    const { XA, U } = throughEdit(X, d, p, true);
    let sum = 0;
    for (let k = 0; k < U.length; k++) sum += U[k]! * U[k]!;
    const mse = sum / (n * d);
    if (grad) {
      const scale = (2 * q.retainWeight) / (n * d);
      const G = U.map((u) => scale * u);
      backThroughEdit(X, XA, G, d, p, true, grad);
    }
    return withGrad ? { value: q.retainWeight * mse, mse, grad: grad! } : { value: q.retainWeight * mse, mse };
  }
  if (term === "push") {
    const X = q.pushRows;
    const n = rowCount(X, d, "pushRows");
    const { XA, U } = throughEdit(X, d, p, true);
    const R = new Float64Array(n * d);
    let sum = 0;
    for (let row = 0; row < n; row++) {
      projectSpecific(q, U, row * d, R);
      for (let i = 0; i < d; i++) {
        const e = R[row * d + i]! - q.alpha * q.shift[i]!;
        R[row * d + i] = e;
        sum += e * e;
      }
    }
    const mse = sum / (n * d);
    if (grad) {
      // dL/dU_n = 2 / (N d) P_s^T R_n, and P_s is symmetric.
      const G = new Float64Array(n * d);
      for (let row = 0; row < n; row++) projectSpecific(q, R, row * d, G);
      const scale = 2 / (n * d);
      for (let k = 0; k < G.length; k++) G[k]! *= scale;
      backThroughEdit(X, XA, G, d, p, true, grad);
    }
    return withGrad ? { value: mse, mse, grad: grad! } : { value: mse, mse };
  }
  const X = q.alignRows;
  const n = rowCount(X, d, "alignRows");
  const { XA, U } = throughEdit(X, d, p, false);
  let a2 = 0;
  for (let i = 0; i < d; i++) a2 += q.agnostic[i]! * q.agnostic[i]!;
  const s = new Float64Array(n);
  let sum = 0;
  for (let row = 0; row < n; row++) {
    let v = 0;
    for (let i = 0; i < d; i++) v += q.agnostic[i]! * (X[row * d + i]! + U[row * d + i]!);
    s[row] = v;
    sum += a2 * v * v;
  }
  const mse = sum / (n * d);
  if (grad) {
    // dL/dU_n = 2 w_a ||a||^2 / (N d) s_n a.
    const G = new Float64Array(n * d);
    const scale = (2 * q.alignWeight * a2) / (n * d);
    for (let row = 0; row < n; row++) for (let i = 0; i < d; i++) G[row * d + i] = scale * s[row]! * q.agnostic[i]!;
    backThroughEdit(X, XA, G, d, p, false, grad);
  }
  return withGrad ? { value: q.alignWeight * mse, mse, grad: grad! } : { value: q.alignWeight * mse, mse };
}

/** The total and each term; terms with weight 0 still report their bare MSE. */
export function lensLoss(p: EditParams, q: LensLossProblem, withGrad: true): LossWithGradient;
export function lensLoss(p: EditParams, q: LensLossProblem, withGrad?: false): LossValues;
export function lensLoss(p: EditParams, q: LensLossProblem, withGrad = false): LossValues | LossWithGradient {
  checkShapes(p, q);
  const grad = withGrad ? zeroParams(q.hiddenSize, p.rank) : undefined;
  const values = {} as Record<LossTerm, TermValue>;
  for (const term of LOSS_TERMS) {
    // A term with weight 0 adds nothing to the gradient: skip that work.
    const weight = term === "retain" ? q.retainWeight : term === "align" ? q.alignWeight : 1;
    const t = lossTerm(term, p, q, withGrad && weight !== 0);
    values[term] = t;
    if (grad && t.grad) addInto(grad, t.grad);
  }
  const out: LossValues = {
    total: values.retain.value + values.push.value + values.align.value,
    retain: values.retain.value,
    push: values.push.value,
    align: values.align.value,
    mse: { retain: values.retain.mse, push: values.push.mse, align: values.align.mse },
  };
  return grad ? { ...out, grad } : out;
}

function addInto(into: EditParams, g: EditParams): void {
  for (const k of ["A", "B", "b"] as const) {
    const x = into[k];
    const y = g[k];
    for (let i = 0; i < x.length; i++) x[i]! += y[i]!;
  }
}

function checkShapes(p: EditParams, q: LensLossProblem): void {
  const d = q.hiddenSize;
  const r = p.rank;
  if (!Number.isInteger(r) || r < 1) throw new RangeError(`rank must be a positive integer, got ${r}`);
  if (p.A.length !== d * r || p.B.length !== r * d || p.b.length !== d) {
    throw new RangeError(
      `parameters are A ${p.A.length}, B ${p.B.length}, b ${p.b.length}; expected ${d * r}, ${r * d}, ${d}`,
    );
  }
  if (q.basis.length !== d * q.basisRank)
    throw new RangeError(`basis has ${q.basis.length} values, expected ${d} x ${q.basisRank}`);
  if (q.agnostic.length !== d || q.shift.length !== d)
    throw new RangeError("agnostic direction and shift must have hiddenSize values");
}
