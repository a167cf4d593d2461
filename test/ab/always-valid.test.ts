/**
 * The guarantee behind the experiment verdicts, by simulation: under the null (equal arms), looking
 * after every batch of requests, the sequential test's false-positive rate stays at or below alpha
 * while the fixed-horizon z-test looked at the same way exceeds it; with a real difference the
 * sequential test detects it. Seeded: the figures are the same on every run (docs/ab-testing.md
 * quotes them).
 */
import { describe, expect, it } from "vitest";
import {
  mixtureSprt,
  quantileCsRanks,
  sequentialProportions,
} from "../../src/gateway/services/experiments/sequential-test.js";
import { type PeekingOutcome, simulateLatencyGuardrail, simulatePeeking } from "./simulation.js";

const ALPHA = 0.05;
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const table: string[] = [];
function report(name: string, o: PeekingOutcome): void {
  table.push(
    `| ${name} | ${o.experiments} | ${pct(o.sequential)} | ${pct(o.fixedPeeking)} | ${pct(o.fixedOnce)} | ${o.medianRequestsAtDetection ?? "n/a"} |`,
  );
}

describe("mixture SPRT (pure)", () => {
  it("rejects exactly when 0 leaves its confidence sequence", () => {
    for (let i = 0; i < 200; i++) {
      const diff = (i - 100) / 1000;
      const variance = 1e-4 * (1 + (i % 7));
      const t = mixtureSprt(diff, variance, ALPHA)!;
      expect(t.significant).toBe(t.ci[0] > 0 || t.ci[1] < 0);
      expect(t.p_value).toBeGreaterThan(0);
      expect(t.p_value).toBeLessThanOrEqual(1);
    }
  });

  it("matches the closed form of the mixture likelihood ratio", () => {
    // V = 0.0001, tau^2 = 0.0025, diff = 0.04: ratio = sqrt(V/(V+tau^2)) exp(tau^2 d^2 / (2 V (V + tau^2))).
    const v = 1e-4;
    const t2 = 0.0025;
    const ratio = Math.sqrt(v / (v + t2)) * Math.exp((t2 * 0.04 ** 2) / (2 * v * (v + t2)));
    expect(mixtureSprt(0.04, v, ALPHA)!.p_value).toBeCloseTo(1 / ratio, 12);
    expect(mixtureSprt(0, v, ALPHA)!.p_value).toBe(1);
    expect(mixtureSprt(0.1, 0, ALPHA)).toBeNull();
  });

  it("is stricter than the fixed-horizon test for the same data", () => {
    // 560/1000 vs 500/1000: z = 2.69, fixed-horizon p = 0.007; the sequential one pays for peeking.
    const s = sequentialProportions(560, 1000, 500, 1000, ALPHA)!;
    expect(s.p_value).toBeGreaterThan(0.007);
    const wide = s.ci[1] - s.ci[0];
    expect(wide).toBeGreaterThan(2 * 1.96 * Math.sqrt((0.56 * 0.44 + 0.25) / 1000));
  });

  it("bounds a quantile between order statistics, unbounded until there are enough samples", () => {
    expect(quantileCsRanks(0, 0.95, 0.05)).toEqual({ lower: null, upper: null });
    expect(quantileCsRanks(20, 0.95, 0.05).upper).toBeNull();
    const big = quantileCsRanks(100_000, 0.95, 0.05);
    expect(big.lower!).toBeLessThan(95_000);
    expect(big.upper!).toBeGreaterThan(95_000);
    expect(big.upper! - big.lower!).toBeLessThan(2_000);
  });
});

describe("continuous peeking, simulated", () => {
  it("under the null the sequential test stays at or below alpha; the fixed-horizon test looked at every batch does not", () => {
    // Fidelity-like: 60% in both arms, 100 requests per arm between looks, up to 5,000 per arm.
    const fidelity = simulatePeeking({
      treatment: 0.6,
      control: 0.6,
      batch: 100,
      looks: 50,
      experiments: 2000,
      alpha: ALPHA,
      seed: 1,
    });
    report("null: 60% vs 60%, 50/50 split, look every 100/arm, up to 5,000/arm", fidelity);
    expect(fidelity.sequential).toBeLessThanOrEqual(ALPHA);
    expect(fidelity.fixedPeeking).toBeGreaterThan(2 * ALPHA);
    // Error-rate-like: a rare outcome with an unequal split, where the plain normal approximation strains.
    const rare = simulatePeeking({
      treatment: 0.02,
      control: 0.02,
      batch: 50,
      looks: 100,
      experiments: 2000,
      alpha: ALPHA,
      seed: 3,
      treatmentShare: 0.2,
    });
    report("null: 2% vs 2%, 20/80 split, look every 50/arm, up to 5,000/arm", rare);
    expect(rare.sequential).toBeLessThanOrEqual(ALPHA);
    expect(rare.fixedPeeking).toBeGreaterThan(2 * ALPHA);
    const common = simulatePeeking({
      treatment: 0.9,
      control: 0.9,
      batch: 50,
      looks: 100,
      experiments: 2000,
      alpha: ALPHA,
      seed: 4,
      treatmentShare: 0.1,
    });
    report("null: 90% vs 90%, 10/90 split, look every 50/arm, up to 5,000/arm", common);
    expect(common.sequential).toBeLessThanOrEqual(ALPHA);
    expect(common.fixedPeeking).toBeGreaterThan(2 * ALPHA);
  });

  it("detects a real difference", () => {
    // +5 points on a 60% fidelity, looked at every 100 requests per arm, at most 5,000 per arm.
    const five = simulatePeeking({
      treatment: 0.65,
      control: 0.6,
      batch: 100,
      looks: 50,
      experiments: 1000,
      alpha: ALPHA,
      seed: 2,
    });
    report("+5 pp: 65% vs 60%, 50/50 split, look every 100/arm, up to 5,000/arm", five);
    expect(five.sequential).toBeGreaterThanOrEqual(0.9);
    // +10 points is found much sooner.
    const ten = simulatePeeking({
      treatment: 0.7,
      control: 0.6,
      batch: 100,
      looks: 50,
      experiments: 1000,
      alpha: ALPHA,
      seed: 5,
    });
    report("+10 pp: 70% vs 60%, 50/50 split, look every 100/arm, up to 5,000/arm", ten);
    expect(ten.sequential).toBeGreaterThanOrEqual(0.99);
    expect(ten.medianRequestsAtDetection!).toBeLessThan(five.medianRequestsAtDetection!);
    // An error rate going from 2% to 5% (a guardrail's case).
    const errors = simulatePeeking({
      treatment: 0.05,
      control: 0.02,
      batch: 50,
      looks: 100,
      experiments: 1000,
      alpha: ALPHA,
      seed: 6,
    });
    report("errors 2% -> 5%, 50/50 split, look every 50/arm, up to 5,000/arm", errors);
    expect(errors.sequential).toBeGreaterThanOrEqual(0.9);
  });

  it("the p95 latency guardrail fires for a slower arm and not for an equal one", () => {
    const equal = simulateLatencyGuardrail({
      controlMedianMs: 300,
      treatmentMedianMs: 300,
      sigma: 0.5,
      batch: 250,
      looks: 20,
      experiments: 300,
      alpha: ALPHA,
      marginMs: 0,
      seed: 11,
    });
    const slower = simulateLatencyGuardrail({
      controlMedianMs: 300,
      treatmentMedianMs: 390,
      sigma: 0.5,
      batch: 250,
      looks: 20,
      experiments: 300,
      alpha: ALPHA,
      marginMs: 0,
      seed: 12,
    });
    const withinMargin = simulateLatencyGuardrail({
      controlMedianMs: 300,
      treatmentMedianMs: 330,
      sigma: 0.5,
      batch: 250,
      looks: 20,
      experiments: 300,
      alpha: ALPHA,
      marginMs: 150,
      seed: 13,
    });
    table.push(
      `| p95 guardrail, equal latency (median 300 ms, log-sd 0.5), look every 250/arm, up to 5,000/arm | 300 | ${pct(equal.fired)} fired | | | |`,
    );
    table.push(
      `| p95 guardrail, treatment 30% slower | 300 | ${pct(slower.fired)} fired | | | ${slower.medianRequestsAtFiring} |`,
    );
    table.push(`| p95 guardrail, treatment 10% slower, margin 150 ms | 300 | ${pct(withinMargin.fired)} fired | | | |`);
    expect(equal.fired).toBeLessThanOrEqual(ALPHA);
    expect(withinMargin.fired).toBeLessThanOrEqual(ALPHA);
    expect(slower.fired).toBeGreaterThanOrEqual(0.9);
    console.log(
      [
        "| scenario | experiments | sequential significant | fixed-horizon, every look | fixed-horizon, last look only | median requests/arm at detection |",
        "|---|---|---|---|---|---|",
        ...table,
      ].join("\n"),
    );
  });
});
