/** GET /admin/registry: languages with their active and previous delta, adapters with source and uses. */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { AdapterEntry, LanguageEntry } from "../../src/gateway/services/console/registry.js";
import { makeDelta } from "../../dev/make-delta.js";
import { TEST_MODEL, gatewayFetch, newKey } from "./helpers.js";

let admin: string;
beforeAll(async () => {
  admin = await newKey("admin");
});

async function call(method: string, path: string, body?: unknown, key: string | null = admin): Promise<Response> {
  const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  const init: RequestInit = { method, headers };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers["content-type"] = "application/json";
  }
  return gatewayFetch()(`http://gateway.test${path}`, init);
}

async function upload(id: string, seed: number, metrics?: Record<string, number>): Promise<string> {
  const d = makeDelta({
    hiddenSize: 8,
    layers: [2, 3],
    rank: 2,
    language: "bn",
    id,
    seed,
    ...(metrics ? { metrics } : {}),
  });
  d.manifest.base_model.id = TEST_MODEL;
  const f = new FormData();
  f.set("manifest", JSON.stringify(d.manifest));
  f.set("tensors", new File([d.bytes], "delta.safetensors"));
  const res = await call("POST", "/admin/adapters", f);
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

describe("the registry view", () => {
  it("shows each language's active and previous delta with figures, and where each adapter is used", async () => {
    const first = await upload("bn-reg-1", 3, { fidelity_base: 0.41, fidelity_edited: 0.78 });
    const second = await upload("bn-reg-2", 4, { fidelity_base: 0.41, fidelity_edited: 0.86, english_kl: 0.004 });
    const spare = await upload("bn-reg-3", 5);
    // The second came from a Lens job (as POST /admin/lens/jobs/{id}/register records it).
    await env.DB.prepare(
      "INSERT INTO lens_jobs (id, backend_url, model, kind, created_at, created_by, adapter_id) VALUES ('job-reg-1', 'http://b', ?1, 'train', 0, 'k', ?2)",
    )
      .bind(TEST_MODEL, second)
      .run();
    expect((await call("PUT", "/admin/languages/bn", { adapter: first, scale: 1 })).status).toBe(200);
    expect((await call("PUT", "/admin/languages/bn", { adapter: second, scale: 0.8 })).status).toBe(200);
    const exp = await call("POST", "/admin/experiments", {
      name: "bn spare vs active",
      languages: ["bn"],
      arms: [
        { name: "control", delta: second, scale: 0.8, weight: 1 },
        { name: "spare", delta: spare, scale: 1.2, weight: 1 },
      ],
    });
    expect(exp.status).toBe(201);
    const experimentId = ((await exp.json()) as { id: string }).id;

    const res = await call("GET", "/admin/registry");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { object: string; languages: LanguageEntry[]; adapters: AdapterEntry[] };
    expect(body.object).toBe("registry");
    const bn = body.languages.find((l) => l.language === "bn")!;
    expect(bn.active).toMatchObject({
      adapter_id: second,
      delta_id: "bn-reg-2",
      scale: 0.8,
      kind: "adapter",
      metrics: { fidelity_edited: 0.86, english_kl: 0.004 },
    });
    expect(bn.previous).toMatchObject({
      adapter_id: first,
      delta_id: "bn-reg-1",
      scale: 1,
      metrics: { fidelity_edited: 0.78 },
    });
    expect(bn.experiment).toEqual({ id: experimentId, name: "bn spare vs active", arms: ["control", "spare"] });

    const byId = new Map(body.adapters.map((a) => [a.id, a]));
    expect(byId.get(first)).toMatchObject({
      language: "bn",
      source: { kind: "upload" },
      in_use: [{ as: "previous", language: "bn", scale: 1 }],
    });
    expect(byId.get(first)!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(byId.get(first)!.base_model.fingerprint).toMatch(/^sha256:/);
    expect(byId.get(first)!.size).toBeGreaterThan(0);
    expect(byId.get(second)).toMatchObject({ source: { kind: "lens_job", job_id: "job-reg-1", job_kind: "train" } });
    expect(byId.get(second)!.in_use).toEqual([
      { as: "active", language: "bn", scale: 0.8 },
      {
        as: "arm",
        experiment_id: experimentId,
        experiment_name: "bn spare vs active",
        state: "running",
        arm: "control",
        scale: 0.8,
      },
    ]);
    expect(byId.get(spare)!.in_use).toEqual([
      {
        as: "arm",
        experiment_id: experimentId,
        experiment_name: "bn spare vs active",
        state: "running",
        arm: "spare",
        scale: 1.2,
      },
    ]);

    // Once the experiment stops, its arms are no longer uses.
    await call("POST", `/admin/experiments/${experimentId}/stop`);
    const after = (await (await call("GET", "/admin/registry")).json()) as {
      languages: LanguageEntry[];
      adapters: AdapterEntry[];
    };
    expect(after.adapters.find((a) => a.id === spare)!.in_use).toEqual([]);
    expect(after.languages.find((l) => l.language === "bn")!.experiment).toBeNull();
  });

  it("is admin-only", async () => {
    expect((await call("GET", "/admin/registry", undefined, null)).status).toBe(401);
    expect((await call("GET", "/admin/registry", undefined, await newKey("client"))).status).toBe(403);
  });
});
