/**
 * An experiment's results: per-arm figures from SQL aggregates, each treatment arm compared with
 * the control by always-valid sequential tests (the verdict) with the classic fixed-horizon figures
 * beside them, the sample-ratio check, and the guardrails. Assembly is pure; `loadExperimentFigures`
 * is the only part that reads D1.
 */
import { notFound } from "../../errors.js";
import { type ArmAggregate, readArmAggregates, readLatencyRanks } from "./aggregates.js";
import { compareProportions, controlArm } from "./fixed-horizon.js";
import {
  type GuardrailDeclaration,
  type GuardrailStatus,
  evaluateGuardrails,
  guardrailAlpha,
  latencyRanksFor,
} from "./guardrails.js";
import { type SampleRatioCheck, sampleRatioCheck } from "./sample-ratio.js";
import { type ExperimentState, type StopReason, getExperiment } from "./store.js";
import {
  DEFAULT_ALPHA,
  DEFAULT_TAU,
  type SequentialDiff,
  nearestRank,
  sequentialProportions,
} from "./sequential-test.js";

/** What results need of an experiment. */
export interface ExperimentShape {
  id: string;
  arms: readonly { name: string; weight: number }[];
  guardrails: readonly GuardrailDeclaration[];
}

interface Comparison {
  /** arm - control */
  diff: number;
  /** The verdict's test: always valid, whenever and however often it is looked at. */
  sequential: SequentialDiff | null;
  /** The classic two-proportion z-test: valid only if looked at once, at a sample size fixed in advance. */
  fixed_horizon: { ci95: [number, number]; p_value: number | null; z: number | null; significant: boolean };
}

type Verdict = "better" | "worse" | "inconclusive" | "untrusted" | "no_data";

interface ArmResult {
  arm: string;
  weight: number;
  requests: number;
  errors: { count: number; rate: number | null };
  fidelity: { matched: number; measured: number; rate: number | null };
  latency: { mean_ms: number | null; p95_ms: number | null };
  feedback: { count: number; rate: number | null; mean_score: number | null };
  vs_control: {
    fidelity: Comparison | null;
    feedback_rate: Comparison | null;
    error_rate: Comparison | null;
    /** The fidelity verdict: untrusted while the sample ratio is off. */
    verdict: Verdict;
    guardrails: GuardrailStatus[];
  } | null;
}

export interface ExperimentFigures {
  aggregates: ArmAggregate[];
  /** Per arm, total_ms at the ranks the results need. */
  latencies: Map<string, Map<number, number>>;
}

export interface ResultsSummary {
  control: string;
  method: { sequential: string; alpha: number; tau: number; fixed_horizon: string };
  srm: SampleRatioCheck;
  arms: ArmResult[];
  guardrails: {
    declared: GuardrailDeclaration[];
    alpha_each: number;
    breached: { arm: string; status: GuardrailStatus }[];
  };
}

function compare(x1: number, n1: number, x2: number, n2: number, alpha: number): Comparison | null {
  const fixed = compareProportions(x1, n1, x2, n2);
  if (!fixed) return null;
  return {
    diff: fixed.diff,
    sequential: sequentialProportions(x1, n1, x2, n2, alpha),
    fixed_horizon: {
      ci95: fixed.ci95,
      p_value: fixed.p_value,
      z: fixed.z,
      significant: fixed.p_value !== null && fixed.p_value < alpha,
    },
  };
}

/** The latency ranks results need per arm: the p95, and the bounds a p95 guardrail compares. */
function latencyRanksWanted(e: ExperimentShape, aggregates: readonly ArmAggregate[]): Map<string, number[]> {
  const control = controlArm(e.arms.map((a) => a.name));
  const alphaEach = guardrailAlpha(e.guardrails.length, e.arms.length - 1);
  const p95Guard = e.guardrails.some((g) => g.metric === "p95_latency");
  const wanted = new Map<string, number[]>();
  for (const a of aggregates) {
    if (a.requests === 0) continue;
    const ranks = [nearestRank(a.requests, 0.95)];
    if (p95Guard) {
      const bound = latencyRanksFor(a.requests, a.arm === control ? "control" : "arm", alphaEach);
      if (bound !== null) ranks.push(bound);
    }
    wanted.set(a.arm, ranks);
  }
  return wanted;
}

/** Reads what results need: grouped counts and sums, then latencies at a few ranks. */
export async function loadExperimentFigures(db: D1Database, e: ExperimentShape): Promise<ExperimentFigures> {
  const aggregates = await readArmAggregates(
    db,
    e.id,
    e.arms.map((a) => a.name),
  );
  const latencies = await readLatencyRanks(db, e.id, latencyRanksWanted(e, aggregates));
  return { aggregates, latencies };
}

function verdictOf(fidelity: Comparison | null, srmFlagged: boolean): Verdict {
  if (srmFlagged) return "untrusted";
  if (!fidelity?.sequential) return "no_data";
  if (!fidelity.sequential.significant) return "inconclusive";
  return fidelity.diff > 0 ? "better" : "worse";
}

/** Results from the figures: pure. */
export function summarizeResults(
  e: ExperimentShape,
  figures: ExperimentFigures,
  alpha = DEFAULT_ALPHA,
): ResultsSummary {
  const names = e.arms.map((a) => a.name);
  const control = controlArm(names);
  const alphaEach = guardrailAlpha(e.guardrails.length, e.arms.length - 1);
  const srm = sampleRatioCheck(
    e.arms.map((a, i) => ({ arm: a.name, weight: a.weight, observed: figures.aggregates[i]!.requests })),
  );
  const guardData = (a: ArmAggregate, p95: number | null) => ({
    arm: a.arm,
    requests: a.requests,
    errors: a.errors,
    feedback: a.feedback,
    latencyAtRank: figures.latencies.get(a.arm) ?? new Map<number, number>(),
    p95_ms: p95,
  });
  const p95Of = (a: ArmAggregate) =>
    a.requests ? (figures.latencies.get(a.arm)?.get(nearestRank(a.requests, 0.95)) ?? null) : null;
  const c = figures.aggregates[names.indexOf(control)]!;
  const breached: { arm: string; status: GuardrailStatus }[] = [];
  const arms = figures.aggregates.map((a, i): ArmResult => {
    const base = {
      arm: a.arm,
      weight: e.arms[i]!.weight,
      requests: a.requests,
      errors: { count: a.errors, rate: a.requests ? a.errors / a.requests : null },
      fidelity: { matched: a.matched, measured: a.measured, rate: a.measured ? a.matched / a.measured : null },
      latency: { mean_ms: a.latency_mean, p95_ms: p95Of(a) },
      feedback: { count: a.feedback, rate: a.requests ? a.feedback / a.requests : null, mean_score: a.feedback_mean },
    };
    if (a.arm === control) return { ...base, vs_control: null };
    const fidelity = compare(a.matched, a.measured, c.matched, c.measured, alpha);
    const guardrails = evaluateGuardrails(
      e.guardrails,
      guardData(a, base.latency.p95_ms),
      guardData(c, p95Of(c)),
      alphaEach,
    );
    for (const g of guardrails) if (g.status === "breached") breached.push({ arm: a.arm, status: g });
    return {
      ...base,
      vs_control: {
        fidelity,
        feedback_rate: compare(a.feedback, a.requests, c.feedback, c.requests, alpha),
        error_rate: compare(a.errors, a.requests, c.errors, c.requests, alpha),
        verdict: verdictOf(fidelity, srm.flagged),
        guardrails,
      },
    };
  });
  return {
    control,
    method: {
      sequential: "mixture SPRT (normal approximation), always valid; p95 guardrail: quantile confidence sequences",
      alpha,
      tau: DEFAULT_TAU,
      fixed_horizon: "two-proportion z-test, valid only for one look at a sample size fixed in advance",
    },
    srm,
    arms,
    guardrails: { declared: [...e.guardrails], alpha_each: alphaEach, breached },
  };
}

/** The results JSON of one experiment: every figure from grouped queries, none from reading rows. */
export interface ExperimentResults extends ResultsSummary {
  experiment_id: string;
  state: ExperimentState;
  stop_reason: StopReason | null;
  stopped_at: number | null;
}

export async function experimentResults(db: D1Database, id: string): Promise<ExperimentResults> {
  const e = await getExperiment(db, id);
  if (!e) throw notFound(`No experiment with id '${id}'.`, "experiment_not_found");
  const summary = summarizeResults(e, await loadExperimentFigures(db, e));
  return { experiment_id: id, state: e.state, stop_reason: e.stop_reason, stopped_at: e.stopped_at, ...summary };
}
