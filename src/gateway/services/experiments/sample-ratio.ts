/**
 * Sample-ratio mismatch (SRM): whether the arms' observed counts fit the weights they were
 * configured with. Assignment is a hash of the user, so a split far off the weights means that
 * assignment or logging is broken (a crashing arm that loses records, a cache serving one arm,
 * bots in one arm), and then no comparison between the arms can be trusted. Pure.
 */

/** Below this p-value the split is flagged: strict, since the check is made again and again. */
const SRM_P_THRESHOLD = 0.001;

/** ln Gamma(x) for x > 0 (Lanczos, g = 7, n = 9; relative error about 1e-15). */
function lnGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  const z = x - 1;
  let a = c[0]!;
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** The regularized upper incomplete gamma function Q(a, x) (series below a + 1, else a continued fraction). */
function upperGammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  const lead = -x + a * Math.log(x) - lnGamma(a);
  if (x < a + 1) {
    let sum = 1 / a;
    let term = sum;
    for (let n = 1; n < 1000; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-15) break;
    }
    return Math.max(0, 1 - sum * Math.exp(lead));
  }
  // Lentz's method for the continued fraction of Q.
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return Math.min(1, Math.exp(lead) * h);
}

/** P(chi-square with `df` degrees of freedom >= x). */
export function chiSquareSurvival(x: number, df: number): number {
  return upperGammaQ(df / 2, x / 2);
}

interface SrmArm {
  arm: string;
  weight: number;
  expected_share: number;
  observed: number;
  observed_share: number | null;
}

export interface SampleRatioCheck {
  test: "chi-square";
  /** Requests per arm: the counts the experiment's records hold. */
  unit: "requests";
  statistic: number | null;
  df: number;
  p_value: number | null;
  threshold: number;
  /** p < threshold: the split does not fit the weights; trust no verdict until the cause is found. */
  flagged: boolean;
  arms: SrmArm[];
}

/** Pearson's chi-square test of observed arm counts against the configured weights. */
export function sampleRatioCheck(
  arms: readonly { arm: string; weight: number; observed: number }[],
  threshold = SRM_P_THRESHOLD,
): SampleRatioCheck {
  const total = arms.reduce((s, a) => s + a.observed, 0);
  const weight = arms.reduce((s, a) => s + a.weight, 0);
  const rows: SrmArm[] = arms.map((a) => ({
    arm: a.arm,
    weight: a.weight,
    expected_share: a.weight / weight,
    observed: a.observed,
    observed_share: total > 0 ? a.observed / total : null,
  }));
  const df = arms.length - 1;
  if (total === 0 || df < 1)
    return {
      test: "chi-square",
      unit: "requests",
      statistic: null,
      df,
      p_value: null,
      threshold,
      flagged: false,
      arms: rows,
    };
  let statistic = 0;
  for (const r of rows) {
    const expected = total * r.expected_share;
    statistic += ((r.observed - expected) * (r.observed - expected)) / expected;
  }
  const p = chiSquareSurvival(statistic, df);
  return {
    test: "chi-square",
    unit: "requests",
    statistic,
    df,
    p_value: p,
    threshold,
    flagged: p < threshold,
    arms: rows,
  };
}
