/** The sample-ratio check and the guardrail decisions, on counts (pure). */
import { describe, expect, it } from "vitest";
import { assignArm } from "../../src/gateway/services/experiments/assign.js";
import {
  GUARDRAIL_MIN_REQUESTS,
  GuardrailDeclarations,
  evaluateGuardrails,
  guardrailAlpha,
  latencyRanksFor,
} from "../../src/gateway/services/experiments/guardrails.js";
import { chiSquareSurvival, sampleRatioCheck } from "../../src/gateway/services/experiments/sample-ratio.js";

describe("sample-ratio mismatch", () => {
  it("chi-square tail probabilities match tables", () => {
    expect(chiSquareSurvival(3.841458820694124, 1)).toBeCloseTo(0.05, 10);
    expect(chiSquareSurvival(10.827566170662733, 1)).toBeCloseTo(0.001, 10);
    expect(chiSquareSurvival(5.991464547107979, 2)).toBeCloseTo(0.05, 10);
    expect(chiSquareSurvival(0.5, 3)).toBeCloseTo(0.918891, 5);
    expect(chiSquareSurvival(30, 4)).toBeCloseTo(4.894437e-6, 10);
  });

  const arms = [
    { name: "control", weight: 50 },
    { name: "lens", weight: 50 },
  ];
  const split = (users: number, keep: (arm: string, user: number) => boolean) => {
    const counts = new Map(arms.map((a) => [a.name, 0]));
    for (let u = 0; u < users; u++) {
      const arm = assignArm("ex_srm", `user-${u}`, arms).name;
      if (keep(arm, u)) counts.set(arm, counts.get(arm)! + 1);
    }
    return arms.map((a) => ({ arm: a.name, weight: a.weight, observed: counts.get(a.name)! }));
  };

  it("is not flagged for the gateway's own fair assignment", () => {
    const fair = sampleRatioCheck(split(20_000, () => true));
    expect(fair.flagged).toBe(false);
    expect(fair.p_value!).toBeGreaterThan(0.001);
    expect(fair.df).toBe(1);
  });

  it("is flagged when one arm loses 8% of its records", () => {
    const skewed = sampleRatioCheck(split(20_000, (arm, u) => arm !== "lens" || u % 25 >= 2));
    expect(skewed.flagged).toBe(true);
    expect(skewed.p_value!).toBeLessThan(0.001);
    expect(skewed.arms.map((a) => a.expected_share)).toEqual([0.5, 0.5]);
  });

  it("uses the configured weights, not an even split", () => {
    const twentyEighty = [
      { arm: "control", weight: 20, observed: 2000 },
      { arm: "lens", weight: 80, observed: 8000 },
    ];
    expect(sampleRatioCheck(twentyEighty).flagged).toBe(false);
    expect(sampleRatioCheck(twentyEighty.map((a) => ({ ...a, weight: 50 }))).flagged).toBe(true);
    expect(sampleRatioCheck(twentyEighty.map((a) => ({ ...a, observed: 0 }))).p_value).toBeNull();
  });
});

describe("guardrails", () => {
  const declared = GuardrailDeclarations.parse([
    { metric: "error_rate" },
    { metric: "feedback_rate", margin: 0.02 },
    { metric: "p95_latency", margin_ms: 50 },
  ]);
  const alpha = guardrailAlpha(declared.length, 1);
  const arm = (
    name: string,
    requests: number,
    errors: number,
    feedback: number,
    latencies: Map<number, number> = new Map(),
  ) => ({
    arm: name,
    requests,
    errors,
    feedback,
    latencyAtRank: latencies,
    p95_ms: null,
  });

  it("validates declarations", () => {
    expect(declared[0]).toEqual({ metric: "error_rate", margin: 0 });
    expect(declared[1]).toEqual({ metric: "feedback_rate", margin: 0.02, worse: "lower" });
    expect(GuardrailDeclarations.safeParse([{ metric: "error_rate" }, { metric: "error_rate" }]).success).toBe(false);
    expect(GuardrailDeclarations.safeParse([{ metric: "latency" }]).success).toBe(false);
    expect(GuardrailDeclarations.safeParse([{ metric: "error_rate", margin: -0.1 }]).success).toBe(false);
    expect(GuardrailDeclarations.safeParse([{ metric: "error_rate", margin_ms: 5 }]).success).toBe(false);
  });

  it("splits the experiment's alpha over every guardrail and treatment arm", () => {
    expect(guardrailAlpha(3, 2)).toBeCloseTo(0.05 / 6, 12);
    expect(guardrailAlpha(0, 1)).toBe(0.05);
  });

  it("waits for enough requests, then stops an arm whose error rate is clearly higher", () => {
    const few = evaluateGuardrails(
      declared,
      arm("lens", GUARDRAIL_MIN_REQUESTS - 1, 40, 10),
      arm("control", 500, 0, 50),
      alpha,
    );
    expect(few[0]!.status).toBe("waiting");
    const bad = evaluateGuardrails(declared, arm("lens", 400, 40, 40), arm("control", 400, 4, 40), alpha);
    expect(bad[0]).toMatchObject({ metric: "error_rate", status: "breached", arm_value: 0.1, control_value: 0.01 });
    expect(bad[0]!.interval![0]).toBeGreaterThan(0);
    // The same arms, equal: no breach.
    const same = evaluateGuardrails(declared, arm("lens", 400, 4, 40), arm("control", 400, 4, 40), alpha);
    expect(same[0]!.status).toBe("ok");
  });

  it("tolerates a worsening within the margin", () => {
    const lower = GuardrailDeclarations.parse([{ metric: "feedback_rate", margin: 0.2 }]);
    // 30% vs 40% feedback with n = 2000 each: clearly lower, but by less than 20 points.
    expect(evaluateGuardrails(lower, arm("lens", 2000, 0, 600), arm("control", 2000, 0, 800), 0.05)[0]!.status).toBe(
      "ok",
    );
    const strict = GuardrailDeclarations.parse([{ metric: "feedback_rate" }]);
    expect(evaluateGuardrails(strict, arm("lens", 2000, 0, 600), arm("control", 2000, 0, 800), 0.05)[0]!.status).toBe(
      "breached",
    );
    // "higher is worse" turns it around.
    const higher = GuardrailDeclarations.parse([{ metric: "feedback_rate", worse: "higher" }]);
    expect(evaluateGuardrails(higher, arm("lens", 2000, 0, 600), arm("control", 2000, 0, 800), 0.05)[0]!.status).toBe(
      "ok",
    );
    expect(evaluateGuardrails(higher, arm("lens", 2000, 0, 800), arm("control", 2000, 0, 600), 0.05)[0]!.status).toBe(
      "breached",
    );
  });

  it("compares the arm's lower p95 bound with the control's upper one, plus the margin", () => {
    const p95 = GuardrailDeclarations.parse([{ metric: "p95_latency", margin_ms: 50 }]);
    const n = 5000;
    const lo = latencyRanksFor(n, "arm", 0.05)!;
    const hi = latencyRanksFor(n, "control", 0.05)!;
    expect(lo).toBeLessThan(Math.ceil(0.95 * n));
    expect(hi).toBeGreaterThan(Math.ceil(0.95 * n));
    const check = (armLower: number, controlUpper: number) =>
      evaluateGuardrails(
        p95,
        arm("lens", n, 0, 0, new Map([[lo, armLower]])),
        arm("control", n, 0, 0, new Map([[hi, controlUpper]])),
        0.05,
      )[0]!;
    expect(check(900, 800)).toMatchObject({ status: "breached", interval: [900, 800] });
    expect(check(840, 800).status).toBe("ok");
    // Too few requests for a finite upper bound on the control: waiting.
    expect(
      evaluateGuardrails(p95, arm("lens", n, 0, 0, new Map([[lo, 900]])), arm("control", 200, 0, 0), 0.05)[0]!.status,
    ).toBe("waiting");
  });
});
