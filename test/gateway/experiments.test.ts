import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { DeltaManifest } from "../../src/protocol/delta.js";
import { createKey } from "../../src/gateway/services/api-keys.js";
import { assignArm } from "../../src/gateway/services/experiment-assign.js";
import { compareProportions, mean, normalCdf, percentile, summarizeArms } from "../../src/gateway/services/experiment-stats.js";
import type { Experiment } from "../../src/gateway/services/experiments.js";
import { makeDelta } from "../support/make-delta.js";
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
  it("mean and nearest-rank p95", () => {
    expect(mean([])).toBeNull();
    expect(mean([1, 2, 3, 4])).toBe(2.5);
    const hundred = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1
    expect(percentile(hundred, 95)).toBe(95);
    expect(percentile([10, 20, 30], 95)).toBe(30);
    expect(percentile([7], 95)).toBe(7);
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
    const arms = [{ name: "control", weight: 1 }, { name: "lens", weight: 1 }];
    for (let u = 0; u < 50; u++) expect(assignArm("ex_1", `u${u}`, arms)).toBe(assignArm("ex_1", `u${u}`, arms));
    const differs = Array.from({ length: 50 }, (_, u) => assignArm("ex_1", `u${u}`, arms) !== assignArm("ex_2", `u${u}`, arms));
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
    const oneArm = await admin_("POST", "/admin/experiments", body({ arms: [{ name: "control", delta: null, weight: 1 }] }));
    expect(oneArm.status).toBe(400);
    const dup = await admin_("POST", "/admin/experiments", body({ arms: [{ name: "a", delta: null, weight: 1 }, { name: "a", delta: null, weight: 1 }] }));
    expect(dup.status).toBe(400);
    const zero = await admin_("POST", "/admin/experiments", body({ arms: [{ name: "a", delta: null, weight: 0 }, { name: "b", delta: null, weight: 1 }] }));
    expect(zero.status).toBe(400);
    const missing = await admin_("POST", "/admin/experiments", body({ arms: [{ name: "a", delta: null, weight: 1 }, { name: "b", delta: "ad_nope", weight: 1 }] }));
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
    expect(experiment).toMatchObject({ state: "running", languages: ["sw"], arms: [{ name: "control", delta: null, delta_id: null }, { name: "lens", delta: swAdapter, delta_id: swDeltaId, scale: 1 }] });

    const second = await admin_("POST", "/admin/experiments", body({ name: "again" }));
    expect(second.status).toBe(409);
    expect(await errorCode(second)).toBe("experiment_running");

    const listed = (await (await admin_("GET", "/admin/experiments")).json()) as { data: Experiment[] };
    expect(listed.data.map((e) => e.id)).toContain(experiment.id);
    expect(((await (await admin_("GET", `/admin/experiments/${experiment.id}`)).json()) as Experiment).name).toBe("sw lens vs base");
    expect((await admin_("GET", "/admin/experiments/ex_nope")).status).toBe(404);

    // Paused, it holds no language; resuming while another runs there is refused.
    expect(((await (await admin_("POST", `/admin/experiments/${experiment.id}/pause`)).json()) as Experiment).state).toBe("paused");
    const other = await admin_("POST", "/admin/experiments", body({ name: "other", arms: [{ name: "x", delta: null, weight: 1 }, { name: "y", delta: null, weight: 1 }] }));
    expect(other.status).toBe(201);
    const otherId = ((await other.json()) as Experiment).id;
    expect((await admin_("POST", `/admin/experiments/${experiment.id}/resume`)).status).toBe(409);
    expect(((await (await admin_("POST", `/admin/experiments/${otherId}/stop`)).json()) as Experiment).state).toBe("stopped");
    expect((await admin_("POST", `/admin/experiments/${otherId}/stop`)).status).toBe(409);
    expect(((await (await admin_("POST", `/admin/experiments/${experiment.id}/resume`)).json()) as Experiment).state).toBe("running");

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
    const row = await env.DB.prepare("SELECT experiment_id, arm, delta_id FROM requests WHERE id = ?1").bind(id).first();
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
    expect(control).toMatchObject({ arm: "control", delta: "none", sent: [null], row: { experiment_id: experiment.id, arm: "control", delta_id: null } });
    expect((await chatAs(controlUser)).arm).toBe("control");

    // Without `user`, the key id is the subject.
    expect((await chatAs(undefined)).arm).toBe(assignArm(experiment.id, clientId, experiment.arms).name);

    // x-lens-mode: off stays out of the experiment.
    const off = await chatAs(lensUser, { "x-lens-mode": "off" });
    expect(off).toMatchObject({ arm: null, delta: "none", row: { experiment_id: null, arm: null } });
  });

  it("computes results that match a hand computation", async () => {
    const res = await admin_("POST", "/admin/experiments", {
      name: "seeded",
      languages: ["de"],
      arms: [
        { name: "base", delta: null, weight: 1 },
        { name: "control", delta: null, weight: 1 },
      ],
    });
    expect(res.status).toBe(201);
    const id = ((await res.json()) as Experiment).id;
    // control: 4 rows, match 1,1,0,null; feedback on 2 (1, 0); times 100,200,300,400.
    // base:    5 rows, match 1,1,1,1,0; feedback on 1 (-1); times 10,20,30,40,50.
    const seed: [string, number, number | null, number | null][] = [
      ["control", 100, 1, 1], ["control", 200, 1, 0], ["control", 300, 0, null], ["control", 400, null, null],
      ["base", 10, 1, -1], ["base", 20, 1, null], ["base", 30, 1, null], ["base", 40, 1, null], ["base", 50, 0, null],
    ];
    await env.DB.batch(
      seed.map(([arm, ms, match, score], i) =>
        env.DB.prepare(
          `INSERT INTO requests (id, key_id, language, experiment_id, arm, model, status, total_ms, finish_reason, language_match, stream, created_at, feedback_score)
           VALUES (?1, 'k', 'de', ?2, ?3, 'm', 200, ?4, 'stop', ?5, 0, 0, ?6)`,
        ).bind(`seed-${id}-${i}`, id, arm, ms, match, score),
      ),
    );
    const results = (await (await admin_("GET", `/admin/experiments/${id}/results`)).json()) as {
      control: string;
      arms: { arm: string; requests: number; fidelity: { rate: number }; latency: { mean_ms: number; p95_ms: number }; feedback: { rate: number; mean_score: number }; vs_control: null | { fidelity: { diff: number; ci95: [number, number]; p_value: number }; feedback_rate: { diff: number; p_value: number } } }[];
    };
    expect(results.control).toBe("control");
    const [base, control] = results.arms;
    expect(control).toMatchObject({ arm: "control", requests: 4, fidelity: { rate: 2 / 3 }, latency: { mean_ms: 250, p95_ms: 400 }, feedback: { rate: 0.5, mean_score: 0.5 }, vs_control: null });
    expect(base).toMatchObject({ arm: "base", requests: 5, fidelity: { rate: 0.8 }, latency: { mean_ms: 30, p95_ms: 50 }, feedback: { rate: 0.2, mean_score: -1 } });
    // Fidelity: 4/5 vs 2/3: diff 2/15; se sqrt(.8*.2/5 + (2/3)(1/3)/3); pooled 6/8 -> z = (2/15)/sqrt(.75*.25*(1/5+1/3)) = 0.42164, p = 0.67329.
    const fid = base!.vs_control!.fidelity;
    expect(fid.diff).toBeCloseTo(2 / 15, 10);
    const se = Math.sqrt(0.16 / 5 + 2 / 27);
    expect(fid.ci95[0]).toBeCloseTo(2 / 15 - 1.959964 * se, 5);
    expect(fid.ci95[1]).toBeCloseTo(2 / 15 + 1.959964 * se, 5);
    const z = 2 / 15 / Math.sqrt(0.75 * 0.25 * (1 / 5 + 1 / 3));
    expect(z).toBeCloseTo(0.42164, 4);
    expect(fid.p_value).toBeCloseTo(0.67329, 4);
    // Feedback rate: 1/5 vs 2/4: diff -0.3; pooled 3/9 -> z = -0.3/sqrt((1/3)(2/3)(1/5+1/4)) = -0.94868, p = 0.34278.
    expect(base!.vs_control!.feedback_rate.diff).toBeCloseTo(-0.3, 10);
    expect(base!.vs_control!.feedback_rate.p_value).toBeCloseTo(0.34278, 4);
  });

  it("promotes an arm: the language's delta is set and the experiment stops", async () => {
    expect((await admin_("POST", `/admin/experiments/${experiment.id}/promote`, { arm: "nope" })).status).toBe(400);
    const res = await admin_("POST", `/admin/experiments/${experiment.id}/promote`, { arm: "lens" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ state: "stopped", promoted_arm: "lens" });
    const langs = (await (await admin_("GET", "/admin/languages")).json()) as { data: { language: string; delta_id: string; adapter_id: string }[] };
    expect(langs.data.find((l) => l.language === "sw")).toMatchObject({ delta_id: swDeltaId, adapter_id: swAdapter });
    const after = await chatAs("anyone");
    expect(after).toMatchObject({ arm: null, delta: swDeltaId, row: { experiment_id: null, arm: null } });
  });
});
