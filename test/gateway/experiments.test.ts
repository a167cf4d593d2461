import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { DeltaManifest } from "../../src/protocol/delta.js";
import { createKey } from "../../src/gateway/services/api-keys.js";
import { assignArm } from "../../src/gateway/services/experiments/assign.js";
import { compareProportions, mean, normalCdf } from "../../src/gateway/services/experiments/fixed-horizon.js";
import type { Experiment } from "../../src/gateway/services/experiments/store.js";
import { makeDelta } from "../../dev/make-delta.js";
import { TEST_MODEL, backendLog, gatewayFetch, newKey, postChatTracked } from "./helpers.js";

let admin: string;
let client: string;
let clientId: string;
beforeAll(async () => {
  admin = await newKey("admin");
  const made = await createKey(env.DB, "client", "experiments");
  client = made.key;
  clientId = made.record.id;
});

async function admin_(method: string, path: string, body?: unknown): Promise<Response> {
  const init: RequestInit = { method, headers: { authorization: `Bearer ${admin}` } };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { authorization: `Bearer ${admin}`, "content-type": "application/json" };
  }
  return gatewayFetch()(`http://gateway.test${path}`, init);
}

async function uploadAdapter(id: string, seed: number, language: DeltaManifest["language"]): Promise<string> {
  const d = makeDelta({ hiddenSize: 8, layers: [2, 3], rank: 2, language, id, seed });
  d.manifest.base_model.id = TEST_MODEL;
  const f = new FormData();
  f.set("manifest", JSON.stringify(d.manifest));
  f.set("tensors", new File([d.bytes as Uint8Array<ArrayBuffer>], "delta.safetensors"));
  const res = await admin_("POST", "/admin/adapters", f);
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

const errorCode = async (res: Response) => ((await res.json()) as { error: { code: string | null } }).error.code;

describe("experiment statistics (pure)", () => {
  it("mean", () => {
    expect(mean([])).toBeNull();
    expect(mean([1, 2, 3, 4])).toBe(2.5);
  });

  it("the normal CDF", () => {
    expect(normalCdf(0)).toBeCloseTo(0.5, 7);
    expect(normalCdf(1.959964)).toBeCloseTo(0.975, 6);
    expect(normalCdf(-1)).toBeCloseTo(0.158655, 6);
  });

  it("two proportions: difference, 95% CI and z-test p-value", () => {
    // 60/100 vs 50/100: diff 0.1; unpooled se 0.07; pooled se sqrt(.55*.45*.02) = 0.0703562; z = 1.42134.
    const r = compareProportions(60, 100, 50, 100)!;
    expect(r.diff).toBeCloseTo(0.1, 10);
    expect(r.ci95[0]).toBeCloseTo(0.1 - 1.959964 * 0.07, 5);
    expect(r.ci95[1]).toBeCloseTo(0.1 + 1.959964 * 0.07, 5);
    expect(r.z!).toBeCloseTo(1.42134, 4);
    expect(r.p_value!).toBeCloseTo(0.15522, 4);
    expect(compareProportions(1, 0, 1, 2)).toBeNull();
    expect(compareProportions(5, 5, 3, 3)!.p_value).toBeNull();
  });
});

describe("sticky assignment (pure)", () => {
  const split = (weights: number[]) => {
    const arms = weights.map((weight, i) => ({ name: `a${i}`, weight }));
    const counts = new Map<string, number>();
    for (let u = 0; u < 10_000; u++) {
      const arm = assignArm("ex_split", `user-${u}`, arms).name;
      counts.set(arm, (counts.get(arm) ?? 0) + 1);
    }
    return arms.map((a) => (counts.get(a.name) ?? 0) / 10_000);
  };

  it("splits 10,000 users 50/50 and 20/80 within 2 points", () => {
    const [a, b] = split([50, 50]);
    expect(Math.abs(a! - 0.5)).toBeLessThan(0.02);
    expect(Math.abs(b! - 0.5)).toBeLessThan(0.02);
    const [c, d] = split([20, 80]);
    expect(Math.abs(c! - 0.2)).toBeLessThan(0.02);
    expect(Math.abs(d! - 0.8)).toBeLessThan(0.02);
  });

  it("gives a user the same arm every time, and depends on the experiment", () => {
    const arms = [
      { name: "control", weight: 1 },
      { name: "lens", weight: 1 },
    ];
    for (let u = 0; u < 50; u++) expect(assignArm("ex_1", `u${u}`, arms)).toBe(assignArm("ex_1", `u${u}`, arms));
    const differs = Array.from(
      { length: 50 },
      (_, u) => assignArm("ex_1", `u${u}`, arms) !== assignArm("ex_2", `u${u}`, arms),
    );
    expect(differs.some(Boolean)).toBe(true);
  });
});

describe("experiments through the admin API and chat", () => {
  let swAdapter: string;
  let swDeltaId: string;
  let experiment: Experiment;
  beforeAll(async () => {
    swDeltaId = "sw-exp-1";
    swAdapter = await uploadAdapter(swDeltaId, 71, "sw");
  });

  const body = (over: Record<string, unknown> = {}) => ({
    name: "sw lens vs base",
    languages: ["sw"],
    arms: [
      { name: "control", delta: null, weight: 50 },
      { name: "lens", delta: swAdapter, scale: 1, weight: 50 },
    ],
    ...over,
  });

  it("validates new experiments", async () => {
    const oneArm = await admin_(
      "POST",
      "/admin/experiments",
      body({ arms: [{ name: "control", delta: null, weight: 1 }] }),
    );
    expect(oneArm.status).toBe(400);
    const dup = await admin_(
      "POST",
      "/admin/experiments",
      body({
        arms: [
          { name: "a", delta: null, weight: 1 },
          { name: "a", delta: null, weight: 1 },
        ],
      }),
    );
    expect(dup.status).toBe(400);
    const zero = await admin_(
      "POST",
      "/admin/experiments",
      body({
        arms: [
          { name: "a", delta: null, weight: 0 },
          { name: "b", delta: null, weight: 1 },
        ],
      }),
    );
    expect(zero.status).toBe(400);
    const missing = await admin_(
      "POST",
      "/admin/experiments",
      body({
        arms: [
          { name: "a", delta: null, weight: 1 },
          { name: "b", delta: "ad_nope", weight: 1 },
        ],
      }),
    );
    expect(missing.status).toBe(404);
    expect(await errorCode(missing)).toBe("adapter_not_found");
    const mismatch = await admin_("POST", "/admin/experiments", body({ languages: ["fr"] }));
    expect(mismatch.status).toBe(400);
    expect(await errorCode(mismatch)).toBe("language_mismatch");
    const lang = await admin_("POST", "/admin/experiments", body({ languages: ["xx"] }));
    expect(lang.status).toBe(400);
  });

  it("creates one running experiment per language (409 for a second)", async () => {
    const res = await admin_("POST", "/admin/experiments", body());
    expect(res.status).toBe(201);
    experiment = (await res.json()) as Experiment;
    expect(experiment).toMatchObject({
      state: "running",
      languages: ["sw"],
      arms: [
        { name: "control", delta: null, delta_id: null },
        { name: "lens", delta: swAdapter, delta_id: swDeltaId, scale: 1 },
      ],
    });

    const second = await admin_("POST", "/admin/experiments", body({ name: "again" }));
    expect(second.status).toBe(409);
    expect(await errorCode(second)).toBe("experiment_running");

    const listed = (await (await admin_("GET", "/admin/experiments")).json()) as { data: Experiment[] };
    expect(listed.data.map((e) => e.id)).toContain(experiment.id);
    expect(((await (await admin_("GET", `/admin/experiments/${experiment.id}`)).json()) as Experiment).name).toBe(
      "sw lens vs base",
    );
    expect((await admin_("GET", "/admin/experiments/ex_nope")).status).toBe(404);

    // Paused, it holds no language; resuming while another runs there is refused.
    expect(
      ((await (await admin_("POST", `/admin/experiments/${experiment.id}/pause`)).json()) as Experiment).state,
    ).toBe("paused");
    const other = await admin_(
      "POST",
      "/admin/experiments",
      body({
        name: "other",
        arms: [
          { name: "x", delta: null, weight: 1 },
          { name: "y", delta: null, weight: 1 },
        ],
      }),
    );
    expect(other.status).toBe(201);
    const otherId = ((await other.json()) as Experiment).id;
    expect((await admin_("POST", `/admin/experiments/${experiment.id}/resume`)).status).toBe(409);
    expect(((await (await admin_("POST", `/admin/experiments/${otherId}/stop`)).json()) as Experiment).state).toBe(
      "stopped",
    );
    expect((await admin_("POST", `/admin/experiments/${otherId}/stop`)).status).toBe(409);
    expect(
      ((await (await admin_("POST", `/admin/experiments/${experiment.id}/resume`)).json()) as Experiment).state,
    ).toBe("running");

    // An adapter that is an arm of an experiment not yet stopped cannot be deleted.
    const refused = await admin_("DELETE", `/admin/adapters/${swAdapter}`);
    expect(refused.status).toBe(409);
    expect(await errorCode(refused)).toBe("adapter_in_experiment");
    expect((await admin_("GET", `/admin/adapters/${swAdapter}`)).status).toBe(200);
  });

  const swText = "Habari yako rafiki, unaweza kunisaidia kuandika barua kwa mwalimu wangu leo?";
  async function chatAs(user: string | undefined, headers: Record<string, string> = {}) {
    const { res, settle } = await postChatTracked(
      client,
      { model: TEST_MODEL, messages: [{ role: "user", content: swText }], ...(user ? { user } : {}) },
      {},
      { "x-lens-language": "sw", ...headers },
    );
    expect(res.status).toBe(200);
    await res.text();
    await settle();
    const id = res.headers.get("x-request-id")!;
    const sent = (await backendLog("echo")).filter((r) => r.request_id === id).map((r) => r.delta);
    const row = await env.DB.prepare("SELECT experiment_id, arm, delta_id FROM requests WHERE id = ?1")
      .bind(id)
      .first();
    return { arm: res.headers.get("x-lens-arm"), delta: res.headers.get("x-lens-delta"), sent, row };
  }

  it("assigns chats to sticky arms whose delta reaches the backend", async () => {
    const users = Array.from({ length: 40 }, (_, i) => `person-${i}`);
    const lensUser = users.find((u) => assignArm(experiment.id, u, experiment.arms).name === "lens")!;
    const controlUser = users.find((u) => assignArm(experiment.id, u, experiment.arms).name === "control")!;

    const lens = await chatAs(lensUser);
    expect(lens.arm).toBe("lens");
    expect(lens.delta).toBe(swDeltaId);
    expect(lens.sent.at(-1)).toBe(swDeltaId);
    expect(lens.row).toEqual({ experiment_id: experiment.id, arm: "lens", delta_id: swDeltaId });
    expect((await chatAs(lensUser)).arm).toBe("lens");

    const control = await chatAs(controlUser);
    expect(control).toMatchObject({
      arm: "control",
      delta: "none",
      sent: [null],
      row: { experiment_id: experiment.id, arm: "control", delta_id: null },
    });
    expect((await chatAs(controlUser)).arm).toBe("control");

    // Without `user`, the key id is the subject.
    expect((await chatAs(undefined)).arm).toBe(assignArm(experiment.id, clientId, experiment.arms).name);

    // x-lens-mode: off stays out of the experiment.
    const off = await chatAs(lensUser, { "x-lens-mode": "off" });
    expect(off).toMatchObject({ arm: null, delta: "none", row: { experiment_id: null, arm: null } });
  });

  type Compared = {
    diff: number;
    sequential: { p_value: number; ci: [number, number]; significant: boolean };
    fixed_horizon: { ci95: [number, number]; p_value: number; significant: boolean };
  };
  type Results = {
    control: string;
    state: string;
    stop_reason: unknown;
    srm: {
      flagged: boolean;
      p_value: number | null;
      statistic: number | null;
      arms: { arm: string; observed: number; expected_share: number }[];
    };
    arms: {
      arm: string;
      requests: number;
      errors: { count: number; rate: number };
      fidelity: { rate: number };
      latency: { mean_ms: number; p95_ms: number };
      feedback: { rate: number; mean_score: number };
      vs_control: null | {
        fidelity: Compared;
        feedback_rate: Compared;
        error_rate: Compared;
        verdict: string;
        guardrails: { metric: string; status: string }[];
      };
    }[];
  };

  async function seededExperiment(
    language: string,
    arms: { name: string; weight: number }[],
    guardrails?: unknown[],
  ): Promise<string> {
    const res = await admin_("POST", "/admin/experiments", {
      name: `seeded ${language}`,
      languages: [language],
      arms: arms.map((a) => ({ name: a.name, delta: null, weight: a.weight })),
      ...(guardrails ? { guardrails } : {}),
    });
    expect(res.status).toBe(201);
    return ((await res.json()) as Experiment).id;
  }

  /** Inserts request rows [arm, total_ms, language_match, feedback_score, status?, finish_reason?] with SQL. */
  async function seedRows(
    id: string,
    language: string,
    rows: [string, number, number | null, number | null, number?, string?][],
  ): Promise<void> {
    for (let at = 0; at < rows.length; at += 50) {
      await env.DB.batch(
        rows.slice(at, at + 50).map(([arm, ms, match, score, status, finish], i) =>
          env.DB.prepare(
            `INSERT INTO requests (id, key_id, language, experiment_id, arm, model, status, total_ms, finish_reason, language_match, stream, created_at, feedback_score)
             VALUES (?1, 'k', ?2, ?3, ?4, 'm', ?5, ?6, ?7, ?8, 0, 0, ?9)`,
          ).bind(`seed-${id}-${at + i}`, language, id, arm, status ?? 200, ms, finish ?? "stop", match, score),
        ),
      );
    }
  }

  const results = async (id: string) => {
    const res = await admin_("GET", `/admin/experiments/${id}/results`);
    expect(res.status).toBe(200);
    return (await res.json()) as Results;
  };

  it("computes results that match a hand computation, from SQL aggregates", async () => {
    const id = await seededExperiment("de", [
      { name: "base", weight: 1 },
      { name: "control", weight: 1 },
    ]);
    // control: 4 rows, match 1,1,0,null; feedback on 2 (1, 0); times 100,200,300,400; one 502.
    // base:    5 rows, match 1,1,1,1,0; feedback on 1 (-1); times 10,20,30,40,50; one stream error.
    await seedRows(id, "de", [
      ["control", 100, 1, 1],
      ["control", 200, 1, 0],
      ["control", 300, 0, null],
      ["control", 400, null, null, 502, "error"],
      ["base", 10, 1, -1],
      ["base", 20, 1, null],
      ["base", 30, 1, null, 200, "error"],
      ["base", 40, 1, null],
      ["base", 50, 0, null],
    ]);
    const r = await results(id);
    expect(r.control).toBe("control");
    const [base, control] = r.arms;
    expect(control).toMatchObject({
      arm: "control",
      requests: 4,
      errors: { count: 1, rate: 0.25 },
      fidelity: { rate: 2 / 3 },
      latency: { mean_ms: 250, p95_ms: 400 },
      feedback: { rate: 0.5, mean_score: 0.5 },
      vs_control: null,
    });
    expect(base).toMatchObject({
      arm: "base",
      requests: 5,
      errors: { count: 1, rate: 0.2 },
      fidelity: { rate: 0.8 },
      latency: { mean_ms: 30, p95_ms: 50 },
      feedback: { rate: 0.2, mean_score: -1 },
    });
    // Fixed-horizon, as before: 4/5 vs 2/3: diff 2/15; pooled 6/8 -> z = 0.42164, p = 0.67329.
    const fid = base!.vs_control!.fidelity;
    expect(fid.diff).toBeCloseTo(2 / 15, 10);
    const se = Math.sqrt(0.16 / 5 + 2 / 27);
    expect(fid.fixed_horizon.ci95[0]).toBeCloseTo(2 / 15 - 1.959964 * se, 5);
    expect(fid.fixed_horizon.ci95[1]).toBeCloseTo(2 / 15 + 1.959964 * se, 5);
    expect(fid.fixed_horizon.p_value).toBeCloseTo(0.67329, 4);
    // Sequential: wider than the fixed-horizon interval and never more confident.
    expect(fid.sequential.ci[0]).toBeLessThan(fid.fixed_horizon.ci95[0]);
    expect(fid.sequential.ci[1]).toBeGreaterThan(fid.fixed_horizon.ci95[1]);
    expect(fid.sequential.p_value).toBeGreaterThanOrEqual(fid.fixed_horizon.p_value);
    expect(base!.vs_control!.verdict).toBe("inconclusive");
    // Feedback rate: 1/5 vs 2/4: diff -0.3; pooled 3/9 -> z = -0.94868, p = 0.34278.
    expect(base!.vs_control!.feedback_rate.diff).toBeCloseTo(-0.3, 10);
    expect(base!.vs_control!.feedback_rate.fixed_horizon.p_value).toBeCloseTo(0.34278, 4);
    expect(base!.vs_control!.error_rate.diff).toBeCloseTo(0.2 - 0.25, 10);
    expect(r.srm).toMatchObject({
      flagged: false,
      arms: [
        { arm: "base", observed: 5, expected_share: 0.5 },
        { arm: "control", observed: 4, expected_share: 0.5 },
      ],
    });
  });

  it("gives a sequential verdict once the difference is clear", async () => {
    const id = await seededExperiment("ja", [
      { name: "control", weight: 1 },
      { name: "lens", weight: 1 },
    ]);
    const rows: [string, number, number | null, number | null][] = [];
    for (let i = 0; i < 600; i++)
      rows.push(
        ["control", 100 + (i % 50), i % 10 < 5 ? 1 : 0, null],
        ["lens", 100 + (i % 50), i % 10 < 8 ? 1 : 0, null],
      );
    await seedRows(id, "ja", rows);
    const lens = (await results(id)).arms[1]!;
    expect(lens.vs_control!.fidelity.diff).toBeCloseTo(0.3, 10);
    expect(lens.vs_control!.fidelity.sequential.significant).toBe(true);
    expect(lens.vs_control!.verdict).toBe("better");
    // p95 by nearest rank over 600 rows per arm: rank 570 of 100..149 (12 each) = 147.
    expect(lens.latency.p95_ms).toBe(147);
  });

  it("flags a sample-ratio mismatch when one arm lost records, and not for a fair split", async () => {
    const arms = [
      { name: "control", weight: 50 },
      { name: "lens", weight: 50 },
    ];
    const fairId = await seededExperiment("ko", arms);
    // Users assigned by the gateway's own hash: a fair split.
    const fair: [string, number, number | null, number | null][] = [];
    for (let u = 0; u < 3000; u++) fair.push([assignArm("ex_srm_fixed", `user-${u}`, arms).name, 100, 1, null]);
    await seedRows(fairId, "ko", fair);
    const fairResults = await results(fairId);
    expect(fairResults.srm.flagged).toBe(false);
    expect(fairResults.arms[1]!.vs_control!.verdict).not.toBe("untrusted");
    await admin_("POST", `/admin/experiments/${fairId}/stop`);

    const skewedId = await seededExperiment("ko", arms);
    // The same users, but the lens arm loses one record in seven (say, a crash before logging).
    const skewed: [string, number, number | null, number | null][] = [];
    for (let u = 0; u < 3000; u++) {
      const arm = assignArm("ex_srm_fixed", `user-${u}`, arms).name;
      if (arm === "lens" && u % 7 === 0) continue;
      skewed.push([arm, 100, arm === "lens" ? 1 : 0, null]);
    }
    await seedRows(skewedId, "ko", skewed);
    const skewedResults = await results(skewedId);
    expect(skewedResults.srm.flagged).toBe(true);
    expect(skewedResults.srm.p_value!).toBeLessThan(0.001);
    // A huge fidelity difference, yet no verdict is to be trusted.
    expect(skewedResults.arms[1]!.vs_control!.fidelity.sequential.significant).toBe(true);
    expect(skewedResults.arms[1]!.vs_control!.verdict).toBe("untrusted");
    await admin_("POST", `/admin/experiments/${skewedId}/stop`);
  });

  it("validates guardrails and records why an experiment stopped", async () => {
    const arms = [
      { name: "a", delta: null, weight: 1 },
      { name: "b", delta: null, weight: 1 },
    ];
    const bad = await admin_("POST", "/admin/experiments", {
      name: "g",
      languages: ["es"],
      arms,
      guardrails: [{ metric: "error_rate" }, { metric: "error_rate" }],
    });
    expect(bad.status).toBe(400);
    const unknown = await admin_("POST", "/admin/experiments", {
      name: "g",
      languages: ["es"],
      arms,
      guardrails: [{ metric: "happiness" }],
    });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { error: { param: string } }).error.param).toContain("guardrails");
    const ok = await admin_("POST", "/admin/experiments", {
      name: "g",
      languages: ["es"],
      arms,
      guardrails: [{ metric: "p95_latency", margin_ms: 100 }, { metric: "error_rate" }],
    });
    expect(ok.status).toBe(201);
    const created = (await ok.json()) as Experiment;
    expect(created.guardrails).toEqual([
      { metric: "p95_latency", margin_ms: 100 },
      { metric: "error_rate", margin: 0 },
    ]);
    expect(created.stop_reason).toBeNull();
    const stopped = (await (await admin_("POST", `/admin/experiments/${created.id}/stop`)).json()) as Experiment;
    expect(stopped).toMatchObject({ state: "stopped", stop_reason: { by: "operator" } });
    expect(stopped.stopped_at).toBeTypeOf("number");
  });

  it("promotes an arm: the language's delta is set and the experiment stops", async () => {
    expect((await admin_("POST", `/admin/experiments/${experiment.id}/promote`, { arm: "nope" })).status).toBe(400);
    const res = await admin_("POST", `/admin/experiments/${experiment.id}/promote`, { arm: "lens" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      state: "stopped",
      promoted_arm: "lens",
      stop_reason: { by: "promotion", arm: "lens" },
    });
    const langs = (await (await admin_("GET", "/admin/languages")).json()) as {
      data: { language: string; delta_id: string; adapter_id: string }[];
    };
    expect(langs.data.find((l) => l.language === "sw")).toMatchObject({ delta_id: swDeltaId, adapter_id: swAdapter });
    const after = await chatAs("anyone");
    expect(after).toMatchObject({ arm: null, delta: swDeltaId, row: { experiment_id: null, arm: null } });
  });
});
