/**
 * Seeded randomness and the starting point of delta training.
 *
 * Start: B = 0 and b = 0, so the edit starts as the identity (the first losses are the unedited model's)
 * and, as in LoRA, A only starts to move once B has; A is not zero (with A = 0 and B = 0 neither would
 * get a gradient).
 *   "probe":  A's first min(rank, r_s) columns are M_s's columns (the directions where languages
 *             differ, which the push and retain terms act on), any further columns random N(0, 1/d), and
 *             every entry gets seeded noise N(0, (noise)^2 / d) so the seed always matters.
 *   "random": every entry N(0, 1/d) (columns of about unit norm).
 */
import { seededRandom } from "../../generation/sampler.js";
import type { EditParams } from "./losses.js";

/** The sampler's seeded generator (mulberry32), with the seed checked: the same seed gives the same sequence everywhere. */
function seededUniform(seed: number): () => number {
  if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  return seededRandom(seed);
}

/** Standard normal draws (Box-Muller on the uniform generator, one value per pair of draws). */
function seededNormal(seed: number): () => number {
  const u = seededUniform(seed);
  return () => {
    const u1 = 1 - u(); // (0, 1]: log stays finite
    const u2 = u();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  };
}

export type EditInit = "probe" | "random";

export interface InitOptions {
  hiddenSize: number;
  rank: number;
  seed: number;
  init: EditInit;
  /** M_s row-major [hiddenSize x basisRank] (used by "probe"). */
  basis: ArrayLike<number>;
  basisRank: number;
  /** Noise on A for "probe", in units of 1/sqrt(d) (default 0.01). */
  noise?: number;
}

export function initialParams(o: InitOptions): EditParams {
  const d = o.hiddenSize;
  const r = o.rank;
  const normal = seededNormal(o.seed);
  const unit = 1 / Math.sqrt(d);
  const A = new Float64Array(d * r);
  const fromBasis = o.init === "probe" ? Math.min(r, o.basisRank) : 0;
  const noise = (o.noise ?? 0.01) * unit;
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < r; j++) {
      const z = normal();
      A[i * r + j] = j < fromBasis ? o.basis[i * o.basisRank + j]! + noise * z : unit * z;
    }
  }
  return { rank: r, A, B: new Float64Array(r * d), b: new Float64Array(d) };
}
