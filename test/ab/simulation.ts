/**
 * Simulated experiments for the always-valid tests: two arms receive requests in batches and the
 * results are looked at after every batch, as an operator watching the page would. Seeded, so
 * every run gives the same figures.
 */
import { compareProportions } from "../../src/gateway/services/experiments/fixed-horizon.js";
import { quantileCsRanks, sequentialProportions } from "../../src/gateway/services/experiments/sequential-test.js";

/** mulberry32: a small, fast, seeded uniform generator in [0, 1). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface PeekingPlan {
  /** True rates of the treatment and the control. */
  treatment: number;
  control: number;
  /** Requests per arm added between two looks, and how many looks. */
  batch: number;
  looks: number;
  experiments: number;
  alpha: number;
  seed: number;
  /** Share of each batch's requests that go to the treatment (default: half). */
  treatmentShare?: number;
}

export interface PeekingOutcome {
  experiments: number;
  /** Share of experiments the sequential test ever declared significant. */
  sequential: number;
  /** Share the fixed-horizon z-test, looked at after every batch, ever declared significant. */
  fixedPeeking: number;
  /** Share the fixed-horizon z-test declared significant at the last look only (its intended use). */
  fixedOnce: number;
  /** Median requests per arm (total / 2) when the sequential test first declared it; null if never. */
  medianRequestsAtDetection: number | null;
}

/** Runs `experiments` simulated experiments, looking after every batch. */
export function simulatePeeking(plan: PeekingPlan): PeekingOutcome {
  const random = seeded(plan.seed);
  const share = plan.treatmentShare ?? 0.5;
  const perLook = plan.batch * 2;
  let sequential = 0;
  let fixedPeeking = 0;
  let fixedOnce = 0;
  const detectedAt: number[] = [];
  for (let e = 0; e < plan.experiments; e++) {
    let xt = 0;
    let nt = 0;
    let xc = 0;
    let nc = 0;
    let seqHit = false;
    let fixHit = false;
    for (let look = 1; look <= plan.looks; look++) {
      for (let i = 0; i < perLook; i++) {
        if (random() < share) {
          nt++;
          if (random() < plan.treatment) xt++;
        } else {
          nc++;
          if (random() < plan.control) xc++;
        }
      }
      const s = sequentialProportions(xt, nt, xc, nc, plan.alpha);
      if (!seqHit && s?.significant) {
        seqHit = true;
        detectedAt.push((nt + nc) / 2);
      }
      const f = compareProportions(xt, nt, xc, nc);
      const fixedSignificant = f !== null && f.p_value !== null && f.p_value < plan.alpha;
      if (fixedSignificant) fixHit = true;
      if (look === plan.looks && fixedSignificant) fixedOnce++;
    }
    if (seqHit) sequential++;
    if (fixHit) fixedPeeking++;
  }
  detectedAt.sort((a, b) => a - b);
  return {
    experiments: plan.experiments,
    sequential: sequential / plan.experiments,
    fixedPeeking: fixedPeeking / plan.experiments,
    fixedOnce: fixedOnce / plan.experiments,
    medianRequestsAtDetection: detectedAt.length ? detectedAt[Math.floor(detectedAt.length / 2)]! : null,
  };
}

/** A latency in whole milliseconds: log-normal around `medianMs` (spread sigma on the log scale). */
function latency(random: () => number, medianMs: number, sigma: number): number {
  const u = Math.max(random(), 1e-12);
  const v = random();
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  return Math.max(1, Math.round(medianMs * Math.exp(sigma * z)));
}

/** Order statistics over whole-millisecond samples, kept as counts per millisecond. */
class Histogram {
  private readonly counts: Uint32Array;
  n = 0;
  constructor(maxMs: number) {
    this.counts = new Uint32Array(maxMs + 1);
  }
  add(ms: number): void {
    this.counts[Math.min(ms, this.counts.length - 1)]!++;
    this.n++;
  }
  /** The value at a 1-based rank. */
  at(rank: number): number {
    let seen = 0;
    for (let ms = 0; ms < this.counts.length; ms++) {
      seen += this.counts[ms]!;
      if (seen >= rank) return ms;
    }
    return this.counts.length - 1;
  }
}

export interface LatencyPlan {
  controlMedianMs: number;
  treatmentMedianMs: number;
  sigma: number;
  batch: number;
  looks: number;
  experiments: number;
  alpha: number;
  marginMs: number;
  seed: number;
}

/**
 * Share of experiments in which the p95 guardrail (treatment's lower bound above the control's
 * upper bound plus the margin, each an always-valid bound at alpha / 2) ever fired, looking after
 * every batch; and the median requests per arm when it first did.
 */
export function simulateLatencyGuardrail(plan: LatencyPlan): { fired: number; medianRequestsAtFiring: number | null } {
  const random = seeded(plan.seed);
  let fired = 0;
  const firedAt: number[] = [];
  for (let e = 0; e < plan.experiments; e++) {
    const t = new Histogram(60_000);
    const c = new Histogram(60_000);
    for (let look = 1; look <= plan.looks; look++) {
      for (let i = 0; i < plan.batch; i++) {
        t.add(latency(random, plan.treatmentMedianMs, plan.sigma));
        c.add(latency(random, plan.controlMedianMs, plan.sigma));
      }
      const lower = quantileCsRanks(t.n, 0.95, plan.alpha / 2).lower;
      const upper = quantileCsRanks(c.n, 0.95, plan.alpha / 2).upper;
      if (lower !== null && upper !== null && t.at(lower) > c.at(upper) + plan.marginMs) {
        fired++;
        firedAt.push(t.n);
        break;
      }
    }
  }
  firedAt.sort((a, b) => a - b);
  return {
    fired: fired / plan.experiments,
    medianRequestsAtFiring: firedAt.length ? firedAt[Math.floor(firedAt.length / 2)]! : null,
  };
}
