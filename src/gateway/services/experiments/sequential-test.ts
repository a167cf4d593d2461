/**
 * Always-valid inference: tests and intervals that hold at whatever moment someone looks, however
 * often, so that watching an experiment and stopping "when it is significant" keeps its error rate.
 * Pure functions over numbers (see docs/ab-testing.md for the method and its references).
 *
 * - Differences (two proportions): the mixture sequential probability ratio test (mSPRT) of Johari,
 *   Koomen, Pekelis and Walsh, "Always Valid Inference: Continuous Monitoring of A/B Tests"
 *   (Operations Research, 2022), normal approximation, mixing distribution N(0, tau^2).
 * - Quantiles (p95 latency): the confidence sequence for a quantile of Howard and Ramdas,
 *   "Sequential estimation of quantiles with applications to A/B-testing and best-arm
 *   identification" (Bernoulli, 2022), with a sub-Gaussian normal-mixture boundary.
 */

/** The default error rate of every sequential decision. */
export const DEFAULT_ALPHA = 0.05;

/**
 * Spread of the mixing distribution over the true difference: the size of effect the test is
 * most sensitive to. 0.05 (5 points of a proportion) suits fidelity and error-rate changes; the
 * test stays valid whatever the true effect, only its speed depends on this choice.
 */
export const DEFAULT_TAU = 0.05;

export interface SequentialDiff {
  /** Always-valid p-value at this sample: 1 / (mixture likelihood ratio), capped at 1. */
  p_value: number;
  /** Always-valid (1 - alpha) confidence sequence of the difference, at this sample. */
  ci: [number, number];
  /** p_value <= alpha, which is the same as 0 lying outside `ci`. */
  significant: boolean;
  alpha: number;
}

/**
 * The normal-approximation mSPRT of H0: difference = 0, for an estimated difference `diff` whose
 * variance is `variance`. Rejecting when p <= alpha at any time, however often it is checked, has a
 * false-positive probability of at most alpha (Ville's inequality on the mixture likelihood ratio).
 */
export function mixtureSprt(
  diff: number,
  variance: number,
  alpha = DEFAULT_ALPHA,
  tau = DEFAULT_TAU,
): SequentialDiff | null {
  if (!(variance > 0) || !Number.isFinite(diff)) return null;
  const v = variance;
  const t2 = tau * tau;
  const logRatio = 0.5 * Math.log(v / (v + t2)) + (t2 * diff * diff) / (2 * v * (v + t2));
  const p = Math.min(1, Math.exp(-logRatio));
  // The set of differences the same test would not reject: {d : ratio(diff - d) < 1 / alpha}.
  const half = Math.sqrt(((v * (v + t2)) / t2) * (2 * Math.log(1 / alpha) + Math.log((v + t2) / v)));
  return { p_value: p, ci: [diff - half, diff + half], significant: p <= alpha, alpha };
}

/**
 * The variance of p1 - p2 the test uses: the larger of the unpooled estimate and the pooled one
 * (the variance under H0: p1 = p2), each share smoothed by half a success so that 0 or n successes
 * never give 0. The normal approximation with the unpooled estimate alone is not conservative for
 * rare or near-certain outcomes with unequal arms (see docs/ab-testing.md); the larger one is.
 */
function differenceVariance(x1: number, n1: number, x2: number, n2: number): number {
  const p1 = (x1 + 0.5) / (n1 + 1);
  const p2 = (x2 + 0.5) / (n2 + 1);
  const pooled = (x1 + x2 + 0.5) / (n1 + n2 + 1);
  return Math.max((p1 * (1 - p1)) / n1 + (p2 * (1 - p2)) / n2, pooled * (1 - pooled) * (1 / n1 + 1 / n2));
}

/** Sequential comparison of x1/n1 with x2/n2 (difference p1 - p2); null while either is empty. */
export function sequentialProportions(
  x1: number,
  n1: number,
  x2: number,
  n2: number,
  alpha = DEFAULT_ALPHA,
  tau = DEFAULT_TAU,
): SequentialDiff | null {
  if (n1 <= 0 || n2 <= 0) return null;
  return mixtureSprt(x1 / n1 - x2 / n2, differenceVariance(x1, n1, x2, n2), alpha, tau);
}

/**
 * Best sub-Gaussian variance factor of a centred Bernoulli(p) (Kearns and Saul, 1998): the
 * indicator 1{X <= q_p} - p is sub-Gaussian with this variance, a tighter figure than Hoeffding's 1/4.
 */
function bernoulliSubGaussianVariance(p: number): number {
  if (p <= 0 || p >= 1) return 0;
  if (Math.abs(p - 0.5) < 1e-9) return 0.25;
  return (1 - 2 * p) / (2 * Math.log((1 - p) / p));
}

/** Samples at which the quantile boundary is tightest: tuned for a few hundred requests per arm. */
const QUANTILE_BOUNDARY_TUNED_AT = 250;

/**
 * How far the count of samples at or below the true p-quantile may stray from n*p, at every n at
 * once with probability 1 - alpha: a two-sided normal-mixture boundary for a sub-Gaussian sum.
 */
function quantileBoundary(n: number, p: number, alpha: number): number {
  const sigma2 = bernoulliSubGaussianVariance(p);
  const rho = sigma2 * QUANTILE_BOUNDARY_TUNED_AT;
  const v = n * sigma2 + rho;
  return Math.sqrt(v * (2 * Math.log(1 / alpha) + Math.log(v / rho)));
}

/**
 * The 1-based ranks, among n sorted samples, of the lower and upper ends of an always-valid
 * (1 - alpha) confidence sequence for the p-quantile; null for an end that is still unbounded
 * (too few samples: below the smallest, or above the largest).
 */
export function quantileCsRanks(n: number, p: number, alpha: number): { lower: number | null; upper: number | null } {
  if (n <= 0) return { lower: null, upper: null };
  const f = quantileBoundary(n, p, alpha);
  const lower = Math.floor(n * p - f) + 1;
  const upper = Math.ceil(n * p + f);
  return { lower: lower >= 1 ? lower : null, upper: upper <= n ? upper : null };
}

/** The nearest-rank p-quantile's 1-based rank among n samples (p in (0, 1]). */
export function nearestRank(n: number, p: number): number {
  return Math.max(1, Math.ceil(p * n - 1e-9));
}
