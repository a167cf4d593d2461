/**
 * A guardrail stops an experiment by itself, end to end: chats through the gateway (inside workerd)
 * to stand-in backends, where the treatment arm's requests fail one time in three. The check runs
 * after a request's record is written, under that request's waitUntil; nobody reads the results.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { createKey } from "../../src/gateway/services/api-keys.js";
import { assignArm } from "../../src/gateway/services/experiments/assign.js";
import type { GatewayBindings } from "../../src/gateway/env.js";
import type { Experiment } from "../../src/gateway/services/experiments/store.js";
import worker from "../../src/gateway/index.js";
import { TEST_BACKEND_SECRET } from "../../dev/echo.js";
import { CHECK_INTERVAL_S, ISOLATE_CHECK_INTERVAL_MS } from "../../src/gateway/services/experiments/guardrail-watch.js";
import { makeDelta } from "../../dev/make-delta.js";
import { TEST_MODEL, backends, gatewayFetch, newKey, postChatTracked } from "./helpers.js";

let admin: string;
let client: string;
beforeAll(async () => {
  admin = await newKey("admin");
  client = (await createKey(env.DB, "client", "guardrails")).key;
});

/**
 * The clock the gateway reads: held still, so that however slowly the requests run no check
 * interval passes by itself, and moved on instead of waited for (only ever forward: isolate state
 * is shared between tests).
 */
let shift = 0;
const startedAt = Date.now();
beforeEach(() => {
  vi.spyOn(Date, "now").mockImplementation(() => startedAt + shift);
});
afterEach(() => {
  vi.restoreAllMocks();
});
/** Past both spacings of guardrail checks: the next request's record starts a new round. */
const nextRound = () => {
  shift += Math.max(ISOLATE_CHECK_INTERVAL_MS, CHECK_INTERVAL_S * 1000) + 1000;
};

async function admin_(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${admin}` };
  const init: RequestInit = { method, headers };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers["content-type"] = "application/json";
  }
  return gatewayFetch()(`http://gateway.test${path}`, init);
}

async function uploadAdapter(id: string): Promise<string> {
  const d = makeDelta({ hiddenSize: 8, layers: [2, 3], rank: 2, language: "sw", id, seed: 91 });
  d.manifest.base_model.id = TEST_MODEL;
  const f = new FormData();
  f.set("manifest", JSON.stringify(d.manifest));
  f.set("tensors", new File([d.bytes as Uint8Array<ArrayBuffer>], "delta.safetensors"));
  const res = await admin_("POST", "/admin/adapters", f);
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

const SW = "Habari yako rafiki, unaweza kunisaidia kuandika barua kwa mwalimu wangu leo?";

describe("guardrails stop a failing arm", () => {
  it("stops the experiment once the treatment's error rate is significantly higher, and records why", async () => {
    const adapter = await uploadAdapter("sw-guardrail-1");
    const created = await admin_("POST", "/admin/experiments", {
      name: "sw guarded",
      languages: ["sw"],
      arms: [
        { name: "control", delta: null, weight: 50 },
        { name: "lens", delta: adapter, weight: 50 },
      ],
      guardrails: [{ metric: "error_rate" }],
    });
    expect(created.status).toBe(201);
    const experiment = (await created.json()) as Experiment;
    const get = async () => (await (await admin_("GET", `/admin/experiments/${experiment.id}`)).json()) as Experiment;

    // Every third request of the treatment arm meets a backend that fails mid-answer.
    let lensSent = 0;
    const chat = async (user: string, mayFail = true) => {
      const arm = assignArm(experiment.id, user, experiment.arms).name;
      const failing = mayFail && arm === "lens" && lensSent++ % 3 === 2;
      const overrides = failing ? { BACKEND_URLS: backends["error-frame"] } : {};
      const { res, settle } = await postChatTracked(
        client,
        { model: TEST_MODEL, user, messages: [{ role: "user", content: SW }] },
        overrides,
        { "x-lens-language": "sw" },
      );
      await res.text();
      await settle();
      return { status: res.status, arm: res.headers.get("x-lens-arm") };
    };

    // The first request's check runs (nobody has looked yet) and finds too little data to decide.
    nextRound();
    const first = await chat("user-0");
    expect(first.arm).not.toBeNull();
    const afterFirst = await get();
    expect(afterFirst.state).toBe("running");
    expect(afterFirst.guardrails_checked_at).toBeTypeOf("number");

    let failures = 0;
    let u = 1;
    for (; u < 400; u++) {
      const r = await chat(`user-${u}`);
      if (r.arm === null) break; // a check already stopped it
      if (r.status !== 200) failures++;
    }
    expect(failures).toBeGreaterThan(30);
    const counts = (
      await env.DB.prepare(
        "SELECT arm, COUNT(*) AS n, SUM(status <> 200 OR finish_reason = 'error') AS errors FROM requests WHERE experiment_id = ?1 GROUP BY arm ORDER BY arm",
      )
        .bind(experiment.id)
        .all<{ arm: string; n: number; errors: number }>()
    ).results;
    expect(counts.find((c) => c.arm === "control")!.errors).toBe(0);
    const lens = counts.find((c) => c.arm === "lens")!;
    expect(lens.errors / lens.n).toBeCloseTo(1 / 3, 1);

    // The requests above took less than a check interval: they were not checked again. The next
    // request after the interval starts a new round, which stops the experiment.
    expect((await get()).guardrails_checked_at).toBe(afterFirst.guardrails_checked_at);
    expect((await get()).state).toBe("running");
    nextRound();
    await chat(`user-${u + 1}`);

    const stopped = await get();
    expect(stopped.state).toBe("stopped");
    expect(stopped.stop_reason).toMatchObject({
      by: "guardrail",
      arm: "lens",
      metric: "error_rate",
      figures: { status: "breached", control_value: 0 },
    });
    const reason = stopped.stop_reason as {
      figures: { arm_value: number; interval: [number, number] };
      requests: { arm: number; control: number };
    };
    expect(reason.figures.arm_value).toBeCloseTo(1 / 3, 1);
    expect(reason.figures.interval[0]).toBeGreaterThan(0);
    expect(reason.requests.arm).toBeGreaterThanOrEqual(100);
    expect(stopped.stopped_at).toBeTypeOf("number");

    // The language is free again: requests carry no arm, and another experiment may start there.
    const lensUser = Array.from({ length: 50 }, (_, i) => `later-${i}`).find(
      (x) => assignArm(experiment.id, x, experiment.arms).name === "lens",
    )!;
    const after = await chat(lensUser, false);
    expect(after).toEqual({ status: 200, arm: null });
    const results = (await (await admin_("GET", `/admin/experiments/${experiment.id}/results`)).json()) as {
      stop_reason: { by: string };
      guardrails: { breached: { arm: string; status: { metric: string } }[] };
    };
    expect(results.stop_reason.by).toBe("guardrail");
    expect(results.guardrails.breached.map((b) => [b.arm, b.status.metric])).toEqual([["lens", "error_rate"]]);
    const next = await admin_("POST", "/admin/experiments", {
      name: "sw again",
      languages: ["sw"],
      arms: [
        { name: "control", delta: null, weight: 1 },
        { name: "lens", delta: adapter, weight: 1 },
      ],
    });
    expect(next.status).toBe(201);
  }, 60_000);

  it("leaves a sound experiment running", async () => {
    const created = await admin_("POST", "/admin/experiments", {
      name: "fr guarded, equal arms",
      languages: ["fr"],
      arms: [
        { name: "control", delta: null, weight: 1 },
        { name: "other", delta: null, weight: 1 },
      ],
      guardrails: [{ metric: "error_rate" }, { metric: "p95_latency" }],
    });
    const experiment = (await created.json()) as Experiment;
    const fr = "Bonjour, pouvez-vous m'aider à écrire une lettre à mon professeur aujourd'hui ?";
    let rounds = 0;
    for (let u = 0; u < 240; u++) {
      nextRound();
      const before = ((await (await admin_("GET", `/admin/experiments/${experiment.id}`)).json()) as Experiment)
        .guardrails_checked_at;
      const { res, settle } = await postChatTracked(
        client,
        { model: TEST_MODEL, user: `fr-${u}`, messages: [{ role: "user", content: fr }] },
        {},
        { "x-lens-language": "fr" },
      );
      expect(res.status).toBe(200);
      await res.text();
      await settle();
      const after = ((await (await admin_("GET", `/admin/experiments/${experiment.id}`)).json()) as Experiment)
        .guardrails_checked_at;
      if (after !== before) rounds++;
    }
    // Checked after every one of the 240 requests, and never stopped.
    expect(rounds).toBe(240);
    const after = (await (await admin_("GET", `/admin/experiments/${experiment.id}`)).json()) as Experiment;
    expect(after).toMatchObject({ state: "running", stop_reason: null });
  }, 60_000);

  it("a guardrail round whose D1 calls never answer holds neither the request nor its after-work", async () => {
    const created = await admin_("POST", "/admin/experiments", {
      name: "de guarded, hung storage",
      languages: ["de"],
      arms: [
        { name: "control", delta: null, weight: 1 },
        { name: "other", delta: null, weight: 1 },
      ],
      guardrails: [{ metric: "error_rate" }],
    });
    const experiment = (await created.json()) as Experiment;
    const never = () => new Promise<never>(() => {});
    /** D1 whose statements matching `hang` never settle. */
    const d1Hanging = (hang: RegExp): D1Database =>
      new Proxy(env.DB, {
        get(target, prop) {
          if (prop === "prepare") {
            return (sql: string) => {
              if (!hang.test(sql)) return target.prepare(sql);
              const stuck = { bind: () => stuck, first: never, all: never, run: never, raw: never };
              return stuck;
            };
          }
          const value = Reflect.get(target, prop, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
    const send = async (db: D1Database, user: string) => {
      const bindings = {
        ...env,
        DB: db,
        BACKEND_URLS: backends["echo"],
        BACKEND_SECRET: TEST_BACKEND_SECRET,
        BACKEND_TIMEOUT_MS: "400",
      } as GatewayBindings;
      const ctx = createExecutionContext();
      const res = await worker.fetch(
        new Request("http://gateway.test/v1/chat/completions", {
          method: "POST",
          headers: { authorization: `Bearer ${client}`, "content-type": "application/json", "x-lens-language": "de" },
          body: JSON.stringify({
            model: TEST_MODEL,
            user,
            messages: [{ role: "user", content: "Guten Tag, wie geht es dir heute?" }],
          }),
        }),
        bindings,
        ctx,
      );
      await res.text();
      // Its after-work (record, then the guardrail round) ends: a hung D1 call would hold this forever.
      await waitOnExecutionContext(ctx);
      const record = await env.DB.prepare("SELECT experiment_id FROM requests WHERE id = ?1")
        .bind(res.headers.get("x-request-id"))
        .first<{ experiment_id: string }>();
      return { status: res.status, arm: res.headers.get("x-lens-arm"), record };
    };
    const checkedAt = async () =>
      ((await (await admin_("GET", `/admin/experiments/${experiment.id}`)).json()) as Experiment).guardrails_checked_at;

    // The claim never answers.
    nextRound();
    expect(await send(d1Hanging(/guardrails_checked_at/), "de-1")).toMatchObject({
      status: 200,
      arm: expect.any(String),
      record: { experiment_id: experiment.id },
    });
    expect(await checkedAt()).toBeNull();
    // The claim answers, the aggregates never do: the round was taken, nothing else happened.
    nextRound();
    expect(await send(d1Hanging(/GROUP BY arm/), "de-2")).toMatchObject({
      status: 200,
      record: { experiment_id: experiment.id },
    });
    expect(await checkedAt()).toBeTypeOf("number");
    expect(((await (await admin_("GET", `/admin/experiments/${experiment.id}`)).json()) as Experiment).state).toBe(
      "running",
    );
  });
});
