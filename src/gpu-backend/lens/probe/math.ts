/**
 * Lens probe math at one layer (docs/design.md, "Lens, exactly"), float64, no dependencies:
 *
 *   m_l  = mean_i e_l^i                 M = [m_1 ... m_L]                 (d x L)
 *   mu   = M 1/L ;  U,S,V = SVD(M - mu 1^T) ;  r = L - 1 unless set
 *   M'   = mu 1^T + U[:, :r] S[:r] V[:, :r]^T
 *   m_a  = pinv(M')^T 1 ;  m_a <- m_a / ||m_a||^2 ;  a = m_a / ||m_a||
 *   M_s  = top-r left singular vectors of (M' - m_a 1^T)
 *   Delta_l = mean_i P_s e_l^i - mean_i P_s e_central^i,   P_s x = M_s M_s^T x
 *
 * and the closed-form subspace edit built from it (docs/design.md, "One kind of edit"):
 *   A = M_s,  B = -lambda M_s^T,  b = alpha Delta_l,   so  h' = h - lambda P_s h + alpha Delta_l.
 *
 * Zero singular values. `pinv` drops singular values s <= tol with tol = max(d, L) * eps * s_max by
 * default (numpy's rule; `relativeTolerance` overrides the factor). With r = L - 1, M' = M and M' is
 * normally of full column rank; with r < L - 1, M' has rank r + 1 < L and pinv must drop the rest.
 * M' - m_a 1^T is orthogonal to m_a (M'^T m_a = 1 after the rescaling), so it has rank <= L - 1;
 * when its numerical rank is below r (e.g. two languages with the same mean), M_s keeps only the
 * defined directions and `rank` says how many.
 *
 * Delta_l is computed as P_s (m_l - m_central): the same as the mean of projections by linearity, and
 * cheaper and more accurate (the tests check the two agree).
 */
import { axpy, combine, dot, numericalRank, project, scaled, thinSvd, type Columns } from "../linalg.js";

export interface SubspaceOptions {
  /** The language the shifts are measured from (default "en"). */
  central?: string;
  /** r: rank of the best fit and of M_s (default L - 1; 1 <= r <= L - 1). */
  rank?: number;
  /** Zero threshold as a multiple of the largest singular value (default max(d, L) * 2^-52). */
  relativeTolerance?: number;
}

export interface LanguageSubspaces {
  /** Language order of every per-language field. */
  languages: string[];
  central: string;
  hiddenSize: number;
  /** r as asked (or L - 1). */
  requestedRank: number;
  /** Columns of M_s actually defined: min(r, numerical rank of M' - m_a 1^T). */
  rank: number;
  /** m_l, one per language. */
  means: Columns;
  /** mu = M 1 / L. */
  mu: Float64Array;
  /** M', the best rank-r fit around mu, one column per language. */
  fit: Columns;
  /** pinv(M')^T 1 before rescaling: M'^T m = 1 where M' has full column rank. */
  agnosticSolution: Float64Array;
  /** m_a = agnosticSolution / ||agnosticSolution||^2 (the design notes' language-agnostic direction). */
  agnostic: Float64Array;
  /** a = m_a / ||m_a||. */
  agnosticUnit: Float64Array;
  /** M_s: `rank` orthonormal columns of length d. */
  specific: Columns;
  /** Delta_l per language (zero for the central one). */
  shifts: Float64Array[];
  singularValues: {
    /** Of M - mu 1^T. */
    centered: Float64Array;
    /** Of M' (those above tolerance are used by pinv). */
    fit: Float64Array;
    /** Of M' - m_a 1^T. */
    specific: Float64Array;
  };
}

/** m_l = mean_i e_l^i, summed in float64. */
export function languageMean(samples: ReadonlyArray<ArrayLike<number>>, hiddenSize: number): Float64Array {
  if (samples.length === 0) throw new RangeError("languageMean: no samples");
  const sum = new Float64Array(hiddenSize);
  for (const e of samples) {
    if (e.length !== hiddenSize)
      throw new RangeError(`languageMean: a sample has ${e.length} values, expected ${hiddenSize}`);
    for (let i = 0; i < hiddenSize; i++) sum[i]! += e[i]!;
  }
  return scaled(1 / samples.length, sum);
}

/** The whole probe at one layer from per-language means (insertion order of the record is the language order). */
export function fitLanguageSubspaces(
  meansByLanguage: Readonly<Record<string, ArrayLike<number>>>,
  options: SubspaceOptions = {},
): LanguageSubspaces {
  const languages = Object.keys(meansByLanguage);
  const central = options.central ?? "en";
  const L = languages.length;
  if (L < 2) throw new RangeError(`the probe needs at least 2 languages, got ${L}`);
  const centralIndex = languages.indexOf(central);
  if (centralIndex < 0) throw new RangeError(`the central language "${central}" is not among ${languages.join(", ")}`);
  const r = options.rank ?? L - 1;
  if (!Number.isInteger(r) || r < 1 || r > L - 1)
    throw new RangeError(`rank must be an integer in 1..${L - 1}, got ${r}`);
  const means: Columns = languages.map((l) => Float64Array.from(meansByLanguage[l]!));
  const d = means[0]!.length;
  if (means.some((m) => m.length !== d)) throw new RangeError("language means differ in length");
  if (d < L) throw new RangeError(`hidden size ${d} is below the number of languages ${L}`);

  // mu and the best rank-r fit M' = mu 1^T + U_r S_r V_r^T.
  const mu = combine(means, new Float64Array(L).fill(1 / L), d);
  const centered = means.map((m) => axpyCopy(-1, mu, m));
  const c = thinSvd(centered, d, options.relativeTolerance);
  const fit: Columns = means.map((_, l) => {
    const col = Float64Array.from(mu);
    for (let k = 0; k < r; k++) axpy(c.S[k]! * c.V[k]![l]!, c.U[k]!, col);
    return col;
  });

  // m_a = pinv(M')^T 1 = sum over kept k of u_k (v_k . 1) / s_k.
  const f = thinSvd(fit, d, options.relativeTolerance);
  const keep = numericalRank(f);
  if (keep === 0) throw new RangeError("the language means are all zero");
  const agnosticSolution = new Float64Array(d);
  for (let k = 0; k < keep; k++) {
    const vk = f.V[k]!;
    let v1 = 0;
    for (let l = 0; l < L; l++) v1 += vk[l]!;
    axpy(v1 / f.S[k]!, f.U[k]!, agnosticSolution);
  }
  const solutionNorm2 = dot(agnosticSolution, agnosticSolution);
  if (!(solutionNorm2 > 0)) throw new RangeError("pinv(M')^T 1 is zero: no language-agnostic direction");
  const agnostic = scaled(1 / solutionNorm2, agnosticSolution);
  const agnosticUnit = scaled(1 / Math.sqrt(dot(agnostic, agnostic)), agnostic);

  // M_s: top-r left singular vectors of M' - m_a 1^T, only those the matrix defines.
  const residual = fit.map((col) => axpyCopy(-1, agnostic, col));
  const s = thinSvd(residual, d, options.relativeTolerance);
  const rank = Math.min(r, numericalRank(s));
  if (rank === 0) throw new RangeError("M' - m_a 1^T is zero: the languages are indistinguishable at this layer");
  const specific = s.U.slice(0, rank);

  const centralMean = means[centralIndex]!;
  const shifts = means.map((m, l) =>
    l === centralIndex ? new Float64Array(d) : project(specific, axpyCopy(-1, centralMean, m)),
  );

  return {
    languages,
    central,
    hiddenSize: d,
    requestedRank: r,
    rank,
    means,
    mu,
    fit,
    agnosticSolution,
    agnostic,
    agnosticUnit,
    specific,
    shifts,
    singularValues: { centered: c.S, fit: f.S, specific: s.S },
  };
}

/** The probe at one layer from samples: per-language means, then `fitLanguageSubspaces`. */
export function probeLayerFromSamples(
  samplesByLanguage: Readonly<Record<string, ReadonlyArray<ArrayLike<number>>>>,
  hiddenSize: number,
  options: SubspaceOptions = {},
): LanguageSubspaces {
  const means: Record<string, Float64Array> = {};
  for (const [lang, samples] of Object.entries(samplesByLanguage)) means[lang] = languageMean(samples, hiddenSize);
  return fitLanguageSubspaces(means, options);
}

/** P_s x for M_s given row-major [d x rank] (the layout probes are stored in). */
export function projectRowMajor(basis: ArrayLike<number>, rank: number, x: ArrayLike<number>): Float64Array {
  const d = x.length;
  const coeff = new Float64Array(rank);
  for (let i = 0; i < d; i++) for (let j = 0; j < rank; j++) coeff[j]! += basis[i * rank + j]! * x[i]!;
  const out = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    let v = 0;
    for (let j = 0; j < rank; j++) v += basis[i * rank + j]! * coeff[j]!;
    out[i] = v;
  }
  return out;
}

/** Columns (d x rank) to row-major float32 [i * rank + j], the layout of probe files and of delta A. */
export function columnsToRowMajor(columns: Columns, rows: number): Float32Array {
  const rank = columns.length;
  const out = new Float32Array(rows * rank);
  columns.forEach((col, j) => {
    for (let i = 0; i < rows; i++) out[i * rank + j] = col[i]!;
  });
  return out;
}

/** One layer of a delta, float32, in the delta file layout: A[i*rank+j], B[j*hidden+i], b[i]. */
export interface SubspaceEdit {
  A: Float32Array;
  B: Float32Array;
  b: Float32Array;
  rank: number;
}

/**
 * The closed-form subspace edit: A = M_s, B = -lambda M_s^T, b = alpha Delta_l, so that
 * h + (h A) B + b = h - lambda P_s h + alpha Delta_l.
 * `basis` is M_s row-major [hidden x rank]; `rankOut` >= rank pads A and B with zero columns/rows
 * (a delta file has one rank for all its layers; zero columns change nothing).
 */
export function subspaceEdit(
  basis: ArrayLike<number>,
  rank: number,
  shift: ArrayLike<number>,
  lambda: number,
  alpha: number,
  rankOut: number = rank,
): SubspaceEdit {
  const hidden = shift.length;
  if (basis.length !== hidden * rank)
    throw new RangeError(`basis has ${basis.length} values, expected ${hidden} x ${rank}`);
  if (rankOut < rank) throw new RangeError(`rankOut ${rankOut} is below the basis rank ${rank}`);
  if (!Number.isFinite(lambda) || !Number.isFinite(alpha)) throw new RangeError("lambda and alpha must be finite");
  const A = new Float32Array(hidden * rankOut);
  const B = new Float32Array(rankOut * hidden);
  const b = new Float32Array(hidden);
  for (let i = 0; i < hidden; i++) {
    for (let j = 0; j < rank; j++) {
      const m = basis[i * rank + j]!;
      A[i * rankOut + j] = m;
      B[j * hidden + i] = -lambda * m;
    }
    b[i] = alpha * shift[i]!;
  }
  return { A, B, b, rank: rankOut };
}

/** y + alpha x as a new vector (the inputs stay as they were). */
function axpyCopy(alpha: number, x: ArrayLike<number>, y: ArrayLike<number>): Float64Array {
  return axpy(alpha, x, Float64Array.from(y));
}
