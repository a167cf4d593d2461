/**
 * Guardrails: metrics an experiment must not make worse. Declared at creation; each treatment arm
 * is compared with the control on each, with always-valid tests (sequential-test.ts), and the
 * experiment stops as soon as one arm is significantly worse by more than the declared margin.
 * Pure: the aggregates come from SQL (aggregates.ts).
 */
import { z } from "zod";
import { DEFAULT_ALPHA, quantileCsRanks, sequentialProportions } from "./sequential-test.js";

export const GuardrailDeclaration = z.discriminatedUnion("metric", [
  z.strictObject({
    /** Share of requests that failed: a status other than 200, or a stream that ended in an error. */
    metric: z.literal("error_rate"),
    /** Tolerated increase of the error rate (absolute, 0.01 = one point). */
    margin: z.number().finite().min(0).max(1).default(0),
  }),
  z.strictObject({
    /** The 95th percentile of total_ms. */
    metric: z.literal("p95_latency"),
    /** Tolerated increase of the p95, in milliseconds. */
    margin_ms: z.number().finite().min(0).max(3_600_000).default(0),
  }),
  z.strictObject({
    /** Share of requests that got feedback. */
    metric: z.literal("feedback_rate"),
    /** Tolerated change in the worse direction (absolute). */
    margin: z.number().finite().min(0).max(1).default(0),
    /** Which direction is worse: fewer users rating (default) or more. */
    worse: z.enum(["lower", "higher"]).default("lower"),
  }),
]);
export type GuardrailDeclaration = z.infer<typeof GuardrailDeclaration>;
export type GuardrailMetric = GuardrailDeclaration["metric"];

export const GuardrailDeclarations = z
  .array(GuardrailDeclaration)
  .max(3)
  .refine((gs) => new Set(gs.map((g) => g.metric)).size === gs.length, "each guardrail metric at most once");

/** No guardrail decides before both arms have this many requests: the normal approximation needs them. */
export const GUARDRAIL_MIN_REQUESTS = 100;

/** What a guardrail needs of an arm (from SQL aggregates). */
export interface GuardrailArmData {
  arm: string;
  requests: number;
  errors: number;
  feedback: number;
  /** total_ms at the 1-based ranks asked for (see latencyRanksFor). */
  latencyAtRank: ReadonlyMap<number, number>;
}

export interface GuardrailStatus {
  metric: GuardrailMetric;
  /** ok: not shown worse; breached: significantly worse beyond the margin; waiting: too few requests to decide. */
  status: "ok" | "breached" | "waiting";
  /** The arm's and the control's figure (rates, or p95 in ms). */
  arm_value: number | null;
  control_value: number | null;
  /** The tolerated change, in the metric's unit. */
  margin: number;
  /**
   * For rates, the always-valid confidence sequence of arm - control; for p95, the arm's lower and
   * the control's upper always-valid bound of their p95 (ms). Null while unbounded.
   */
  interval: [number, number] | null;
  /** The error rate this one test runs at (the experiment's alpha shared by all its tests). */
  alpha: number;
  reason: string;
}

/**
 * The alpha each guardrail test gets: the family-wise alpha split evenly (Bonferroni) over every
 * guardrail and treatment arm, so that the chance that a sound experiment is ever stopped by any
 * of them is at most `familyAlpha`.
 */
export function guardrailAlpha(guardrails: number, treatmentArms: number, familyAlpha = DEFAULT_ALPHA): number {
  return familyAlpha / Math.max(1, guardrails * treatmentArms);
}

/** The latency ranks the p95 guardrail needs: the arm's lower and the control's upper bound. */
export function latencyRanksFor(requests: number, role: "arm" | "control", alpha: number): number | null {
  const ranks = quantileCsRanks(requests, 0.95, alpha / 2);
  return role === "arm" ? ranks.lower : ranks.upper;
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

function rateGuardrail(
  metric: "error_rate" | "feedback_rate",
  worseWhen: "higher" | "lower",
  margin: number,
  x: [number, number],
  n: [number, number],
  alpha: number,
): GuardrailStatus {
  const base = {
    metric,
    margin,
    alpha,
    arm_value: n[0] ? x[0] / n[0] : null,
    control_value: n[1] ? x[1] / n[1] : null,
  };
  const test = sequentialProportions(x[0], n[0], x[1], n[1], alpha);
  const interval = test ? test.ci : null;
  if (!test || n[0] < GUARDRAIL_MIN_REQUESTS || n[1] < GUARDRAIL_MIN_REQUESTS) {
    return {
      ...base,
      status: "waiting",
      interval,
      reason: `waiting for ${GUARDRAIL_MIN_REQUESTS} requests in each arm`,
    };
  }
  const [lo, hi] = test.ci;
  const breached = worseWhen === "higher" ? lo > margin : hi < -margin;
  const name = metric === "error_rate" ? "error rate" : "feedback rate";
  const reason = breached
    ? `${name} ${pct(base.arm_value!)} vs control ${pct(base.control_value!)}: the difference is ${worseWhen === "higher" ? "at least" : "at most"} ${
        worseWhen === "higher" ? `+${pct(lo)}` : pct(hi)
      } (always-valid, alpha ${alpha.toPrecision(2)}), beyond the margin of ${pct(margin)}`
    : `${name} not shown worse (difference ${pct(lo)} to ${pct(hi)})`;
  return { ...base, status: breached ? "breached" : "ok", interval, reason };
}

function latencyGuardrail(
  marginMs: number,
  arm: GuardrailArmData,
  control: GuardrailArmData,
  alpha: number,
  armP95: number | null,
  controlP95: number | null,
): GuardrailStatus {
  const base = {
    metric: "p95_latency" as const,
    margin: marginMs,
    alpha,
    arm_value: armP95,
    control_value: controlP95,
  };
  const lowerRank = latencyRanksFor(arm.requests, "arm", alpha);
  const upperRank = latencyRanksFor(control.requests, "control", alpha);
  const armLower = lowerRank === null ? undefined : arm.latencyAtRank.get(lowerRank);
  const controlUpper = upperRank === null ? undefined : control.latencyAtRank.get(upperRank);
  if (
    armLower === undefined ||
    controlUpper === undefined ||
    arm.requests < GUARDRAIL_MIN_REQUESTS ||
    control.requests < GUARDRAIL_MIN_REQUESTS
  ) {
    return {
      ...base,
      status: "waiting",
      interval: null,
      reason: "waiting for enough requests to bound both arms' p95",
    };
  }
  const interval: [number, number] = [armLower, controlUpper];
  if (armLower > controlUpper + marginMs) {
    return {
      ...base,
      status: "breached",
      interval,
      reason: `p95 latency: the arm's is at least ${armLower} ms, the control's at most ${controlUpper} ms (always-valid, alpha ${alpha.toPrecision(2)}), beyond the margin of ${marginMs} ms`,
    };
  }
  return {
    ...base,
    status: "ok",
    interval,
    reason: `p95 latency not shown worse (arm at least ${armLower} ms, control at most ${controlUpper} ms)`,
  };
}

/** Each declared guardrail for one treatment arm against the control. */
export function evaluateGuardrails(
  declared: readonly GuardrailDeclaration[],
  arm: GuardrailArmData & { p95_ms: number | null },
  control: GuardrailArmData & { p95_ms: number | null },
  alpha: number,
): GuardrailStatus[] {
  return declared.map((g) => {
    if (g.metric === "p95_latency")
      return latencyGuardrail(g.margin_ms, arm, control, alpha, arm.p95_ms, control.p95_ms);
    if (g.metric === "error_rate") {
      return rateGuardrail(
        "error_rate",
        "higher",
        g.margin,
        [arm.errors, control.errors],
        [arm.requests, control.requests],
        alpha,
      );
    }
    return rateGuardrail(
      "feedback_rate",
      g.worse,
      g.margin,
      [arm.feedback, control.feedback],
      [arm.requests, control.requests],
      alpha,
    );
  });
}
