import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { hashKey } from "../../src/gateway/services/api-keys.js";
import { gatewayFetch, newKey } from "./helpers.js";

const call = (path: string, key: string | null, init: RequestInit = {}) =>
  gatewayFetch()(`http://gateway.test${path}`, {
    ...init,
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      "content-type": "application/json",
      ...(init.headers as Record<string, string> | undefined),
    },
  });

describe("API keys", () => {
  it("stores keys only as SHA-256 hashes", async () => {
    const admin = await newKey("admin");
    const res = await call("/admin/keys", admin, {
      method: "POST",
      body: JSON.stringify({ scope: "client", name: "ci" }),
    });
    expect(res.status).toBe(201);
    const created = (await res.json()) as { id: string; key: string; scope: string; key_prefix: string };
    expect(created.key).toMatch(/^lens-[A-Za-z0-9_-]{32}$/);
    expect(created.scope).toBe("client");
    const rows = await env.DB.prepare("SELECT * FROM api_keys").all<Record<string, unknown>>();
    const dump = JSON.stringify(rows.results);
    expect(dump).not.toContain(created.key);
    const row = rows.results.find((r) => r["id"] === created.id);
    expect(row?.["key_hash"]).toBe(await hashKey(created.key));
    expect(row?.["key_hash"]).toMatch(/^[0-9a-f]{64}$/);
    // The new key works on /v1.
    expect((await call("/v1/models", created.key)).status).not.toBe(401);
  });

  it("never lists plain keys or hashes", async () => {
    const admin = await newKey("admin");
    const res = await call("/admin/keys", admin);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain("key_hash");
    expect(text).not.toMatch(/lens-[A-Za-z0-9_-]{32}/);
    expect((JSON.parse(text) as { data: unknown[] }).data.length).toBeGreaterThan(0);
  });

  it("refuses a revoked key at once in this isolate", async () => {
    const admin = await newKey("admin");
    const created = (await (
      await call("/admin/keys", admin, { method: "POST", body: JSON.stringify({ scope: "client" }) })
    ).json()) as { id: string; key: string };
    expect((await call("/v1/models", created.key)).status).toBe(200);
    const del = await call(`/admin/keys/${created.id}`, admin, { method: "DELETE" });
    expect(del.status).toBe(200);
    const after = await call("/v1/models", created.key);
    expect(after.status).toBe(401);
    expect(((await after.json()) as { error: { code: string } }).error.code).toBe("invalid_api_key");
    expect((await call(`/admin/keys/${created.id}`, admin, { method: "DELETE" })).status).toBe(404);
  });

  it("keeps client and admin scopes apart", async () => {
    const client = await newKey("client");
    const admin = await newKey("admin");
    expect((await call("/admin/keys", client)).status).toBe(403);
    expect((await call("/v1/models", admin)).status).toBe(403);
    expect((await call("/admin/keys", null)).status).toBe(401);
    expect((await call("/v1/models", null)).status).toBe(401);
    expect((await call("/admin/keys", admin)).status).toBe(200);
    expect((await call("/v1/models", client)).status).toBe(200);
  });

  it("validates key creation input", async () => {
    const admin = await newKey("admin");
    const res = await call("/admin/keys", admin, { method: "POST", body: JSON.stringify({ scope: "root" }) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { param: string } }).error.param).toBe("scope");
  });
});
