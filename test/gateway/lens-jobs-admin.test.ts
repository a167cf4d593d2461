import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { createKey } from "../../src/gateway/services/api-keys.js";
import { TEST_MODEL, gatewayFetch, newKey } from "./helpers.js";

let admin: string;
let adminId: string;
let client: string;

beforeAll(async () => {
  const made = await createKey(env.DB, "admin", "lens-jobs-test");
  admin = made.key;
  adminId = made.record.id;
  client = await newKey("client");
});

async function call(method: string, path: string, body?: unknown, key = admin): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  return gatewayFetch()(`http://gateway.test${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
}

const trainJob = { kind: "train", probe: "job-abc123-0123abcd", language: "sw", rank: 2, steps: 10 };

describe("Lens jobs through the gateway", () => {
  it("submits a train job, reads its progress, registers its delta as an adapter", async () => {
    const submitted = await call("POST", "/admin/lens/jobs", { ...trainJob, model: TEST_MODEL });
    expect(submitted.status).toBe(202);
    const job = (await submitted.json()) as { id: string; state: string; kind: string; model: string };
    expect(job).toMatchObject({ object: "lens.job", kind: "train", model: TEST_MODEL });
    expect(job.id).toMatch(/^job-[0-9a-z]{6,12}-[0-9a-f]{8}$/);
    const row = await env.DB.prepare("SELECT backend_url, created_by FROM lens_jobs WHERE id = ?1")
      .bind(job.id)
      .first<{ backend_url: string; created_by: string }>();
    expect(row?.created_by).toBe(adminId);

    const progress = await call("GET", `/admin/lens/jobs/${job.id}`);
    expect(progress.status).toBe(200);
    const record = (await progress.json()) as Record<string, unknown>;
    expect(record).toMatchObject({
      object: "lens.job",
      id: job.id,
      kind: "train",
      state: "succeeded",
      progress: { stage: "done", done: 1, total: 1 },
      adapter_id: null,
    });
    expect(record["artifact"]).toMatchObject({ kind: "delta", id: job.id });

    const registered = await call("POST", `/admin/lens/jobs/${job.id}/register`);
    expect(registered.status).toBe(201);
    const adapter = (await registered.json()) as {
      id: string;
      delta_id: string;
      language: string;
      created_by: string;
      manifest: { kind: string };
    };
    expect(adapter).toMatchObject({
      object: "adapter",
      delta_id: job.id,
      language: "sw",
      created_by: adminId,
      manifest: { kind: "adapter" },
    });

    const list = (await (await call("GET", "/admin/adapters")).json()) as { data: { id: string }[] };
    expect(list.data.map((a) => a.id)).toContain(adapter.id);

    // Registering again answers the same adapter.
    const again = await call("POST", `/admin/lens/jobs/${job.id}/register`);
    expect(again.status).toBe(200);
    expect(((await again.json()) as { id: string }).id).toBe(adapter.id);
    const after = (await (await call("GET", `/admin/lens/jobs/${job.id}`)).json()) as { adapter_id: string };
    expect(after.adapter_id).toBe(adapter.id);
  });

  it("uses the first served model when none is named, and registers subspace deltas", async () => {
    const submitted = await call("POST", "/admin/lens/jobs", {
      kind: "subspace",
      probe: "p1",
      language: "es",
      layers: [1, 2],
      lambda: 0.5,
      alpha: 1,
    });
    expect(submitted.status).toBe(202);
    const job = (await submitted.json()) as { id: string; model: string };
    expect(job.model).toBe(TEST_MODEL);
    const registered = await call("POST", `/admin/lens/jobs/${job.id}/register`);
    expect(registered.status).toBe(201);
    expect(await registered.json()).toMatchObject({ language: "es", delta_id: job.id, manifest: { kind: "subspace" } });
  });

  it("refuses to register a job that made no delta, and relays the backend's refusal to cancel", async () => {
    const submitted = await call("POST", "/admin/lens/jobs", { kind: "probe", languages: ["en", "sw"], layers: [1] });
    expect(submitted.status).toBe(202);
    const { id } = (await submitted.json()) as { id: string };
    const res = await call("POST", `/admin/lens/jobs/${id}/register`);
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("lens_job_not_delta");
    const cancel = await call("DELETE", `/admin/lens/jobs/${id}`);
    expect(cancel.status).toBe(409);
    expect(((await cancel.json()) as { error: { code: string } }).error.code).toBe("lens_job_conflict");
  });

  it("validates bodies with the shared schemas", async () => {
    for (const body of [
      { kind: "train" },
      { kind: "dance" },
      { ...trainJob, extra: 1 },
      { ...trainJob, language: "xx" },
      [1],
      { ...trainJob, model: 5 },
    ]) {
      const res = await call("POST", "/admin/lens/jobs", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_lens_job");
    }
    expect((await call("POST", "/admin/lens/jobs", "{not json")).status).toBe(400);
    const unknownModel = await call("POST", "/admin/lens/jobs", { ...trainJob, model: "no-such-model" });
    expect(unknownModel.status).toBe(404);
  });

  it("refuses bad job ids with 400 and unknown ones with 404", async () => {
    for (const bad of [
      "nope",
      "job-abc123-0123ABCD",
      "..%2F..%2Fetc",
      "job-abc123-0123abcd%2Fx",
      `job-${"a".repeat(40)}-01234567`,
    ]) {
      for (const [method, path] of [
        ["GET", `/admin/lens/jobs/${bad}`],
        ["DELETE", `/admin/lens/jobs/${bad}`],
        ["POST", `/admin/lens/jobs/${bad}/register`],
      ] as const) {
        const res = await call(method, path);
        expect(res.status, `${method} ${path}`).toBe(400);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_job_id");
      }
    }
    const missing = await call("GET", "/admin/lens/jobs/job-abc123-0123abcd");
    expect(missing.status).toBe(404);
  });

  it("needs an admin key", async () => {
    expect((await call("POST", "/admin/lens/jobs", trainJob, client)).status).toBe(403);
    expect((await call("GET", "/admin/lens/jobs/job-abc123-0123abcd", undefined, client)).status).toBe(403);
    expect((await call("POST", "/admin/lens/jobs/job-abc123-0123abcd/register", undefined, client)).status).toBe(403);
    const none = await gatewayFetch()("http://gateway.test/admin/lens/jobs/job-abc123-0123abcd");
    expect(none.status).toBe(401);
  });
});
