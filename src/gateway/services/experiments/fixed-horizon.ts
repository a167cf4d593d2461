/**
 * Fixed-horizon statistics for experiment results: pure functions over numbers. Their p-values hold
 * only when looked at once, at a sample size fixed in advance; sequential-test.ts holds the
 * always-valid ones that verdicts rest on.
 */

/** 97.5th percentile of the standard normal: a 95% two-sided interval is ±Z95 standard errors. */
const Z95 = 1.959963984540054;

export function mean(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  return values.reduce((s, v) => s + v, 0) / values.length;
}

/** The standard normal CDF (Abramowitz & Stegun 7.1.26 erf; absolute error under 1.5e-7). */
export function normalCdf(z: number): number {
  const x = Math.abs(z) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * x);
  const erf =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return z >= 0 ? 0.5 * (1 + erf) : 0.5 * (1 - erf);
}

export interface ProportionDiff {
  /** p1 - p2 */
  diff: number;
  /** 95% confidence interval of the difference (unpooled normal approximation). */
  ci95: [number, number];
  /** Two-sided p-value of the two-proportion z-test (pooled standard error); null when undefined. */
  p_value: number | null;
  z: number | null;
}

/** Compares x1/n1 with x2/n2; null when either sample is empty. */
export function compareProportions(x1: number, n1: number, x2: number, n2: number): ProportionDiff | null {
  if (n1 <= 0 || n2 <= 0) return null;
  const p1 = x1 / n1;
  const p2 = x2 / n2;
  const diff = p1 - p2;
  const se = Math.sqrt((p1 * (1 - p1)) / n1 + (p2 * (1 - p2)) / n2);
  const pooled = (x1 + x2) / (n1 + n2);
  const se0 = Math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2));
  const z = se0 > 0 ? diff / se0 : null;
  return {
    diff,
    ci95: [diff - Z95 * se, diff + Z95 * se],
    z,
    p_value: z === null ? null : 2 * (1 - normalCdf(Math.abs(z))),
  };
}

/** The control arm: the one named "control", else the first. */
export function controlArm(arms: readonly string[]): string {
  return arms.includes("control") ? "control" : arms[0]!;
}
