import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { DeltaManifest } from "../../src/protocol/delta.js";
import { createKey } from "../../src/gateway/services/api-keys.js";
import { blobKey, manifestKey } from "../../src/gateway/services/deltas/adapters.js";
import { makeDelta, rawSafetensors, type MadeDelta } from "../../dev/make-delta.js";
import { type Overrides, TEST_MODEL, backendLog, backends, gatewayFetch, newKey, postChat } from "./helpers.js";
import { backendAuthorization } from "../../src/protocol/backend.js";
import { TEST_BACKEND_SECRET } from "../../dev/echo.js";

let admin: string;
let adminId: string;
let client: string;

beforeAll(async () => {
  const made = await createKey(env.DB, "admin", "adapters-test");
  admin = made.key;
  adminId = made.record.id;
  client = await newKey("client");
});

/** A valid delta for the stand-in backends' model (hidden 8, 4 layers). */
function delta(
  id: string,
  seed: number,
  language: DeltaManifest["language"] = "es",
  extra: Partial<Parameters<typeof makeDelta>[0]> = {},
): MadeDelta {
  const d = makeDelta({ hiddenSize: 8, layers: [2, 3], rank: 2, language, id, seed, ...extra });
  d.manifest.base_model.id = TEST_MODEL;
  return d;
}

function form(manifest: unknown, bytes?: Uint8Array): FormData {
  const f = new FormData();
  if (manifest !== undefined) f.set("manifest", typeof manifest === "string" ? manifest : JSON.stringify(manifest));
  if (bytes) f.set("tensors", new File([bytes as Uint8Array<ArrayBuffer>], "delta.safetensors"));
  return f;
}

async function admin_(
  method: string,
  path: string,
  body?: BodyInit,
  overrides: Overrides = {},
  key = admin,
): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (typeof body === "string") headers["content-type"] = "application/json";
  return gatewayFetch(overrides)(`http://gateway.test${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body } : {}),
  });
}

const upload = (d: { manifest: unknown; bytes?: Uint8Array }, overrides: Overrides = {}) =>
  admin_("POST", "/admin/adapters", form(d.manifest, d.bytes), overrides);

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** What is stored: every adapters row and every R2 key. */
async function stored() {
  const rows = await env.DB.prepare("SELECT id, sha256 FROM adapters ORDER BY id").all<{
    id: string;
    sha256: string;
  }>();
  const objects = (await env.ADAPTERS.list()).objects.map((o) => o.key).sort();
  return { rows: rows.results, objects };
}

async function chatIn(language: string, content: string) {
  const res = await postChat(
    client,
    { model: TEST_MODEL, messages: [{ role: "user", content }] },
    {},
    { "x-lens-language": language },
  );
  expect(res.status).toBe(200);
  await res.text();
  const id = res.headers.get("x-request-id")!;
  return {
    header: res.headers.get("x-lens-delta"),
    sent: (await backendLog("echo")).filter((r) => r.request_id === id).map((r) => r.delta),
  };
}

describe("uploading, activating and rolling back an adapter", () => {
  it("stores a valid delta once, activates it for its language, and rolls back", async () => {
    const v1 = delta("es-admin-1", 11);
    const res = await upload(v1);
    expect(res.status).toBe(201);
    const row = (await res.json()) as Record<string, unknown>;
    const sha = await sha256Hex(v1.bytes);
    expect(row).toMatchObject({
      object: "adapter",
      language: "es",
      delta_id: "es-admin-1",
      sha256: sha,
      r2_key: blobKey(sha),
      size: v1.bytes.byteLength,
      created_by: adminId,
    });
    expect(row["id"]).toMatch(/^ad_[0-9a-f]{24}$/);
    expect(row["manifest"]).toEqual(v1.manifest);
    const id1 = row["id"] as string;

    const blob = await env.ADAPTERS.get(blobKey(sha));
    expect(new Uint8Array(await blob!.arrayBuffer())).toEqual(v1.bytes);
    expect(JSON.parse(await (await env.ADAPTERS.get(manifestKey(sha)))!.text())).toEqual(v1.manifest);

    const list = (await (await admin_("GET", "/admin/adapters")).json()) as { data: { id: string }[] };
    expect(list.data.map((a) => a.id)).toContain(id1);
    const one = await admin_("GET", `/admin/adapters/${id1}`);
    expect(one.status).toBe(200);
    expect(await one.json()).toEqual(row);

    // Before activation, Spanish requests carry nothing.
    expect(await chatIn("es", "Hola, ¿me ayudas con una carta?")).toEqual({ header: "none", sent: [null] });

    const act = await admin_("PUT", "/admin/languages/es", JSON.stringify({ adapter: id1, scale: 0.5 }));
    expect(act.status).toBe(200);
    expect(await act.json()).toMatchObject({
      language: "es",
      delta_id: "es-admin-1",
      adapter_id: id1,
      scale: 0.5,
      previous_delta_id: null,
    });
    expect(await chatIn("es", "Hola, ¿me ayudas con una carta?")).toEqual({
      header: "es-admin-1",
      sent: ["es-admin-1"],
    });

    const v2 = delta("es-admin-2", 12);
    const res2 = await upload(v2);
    expect(res2.status).toBe(201);
    const id2 = ((await res2.json()) as { id: string }).id;
    const act2 = await admin_("PUT", "/admin/languages/es", JSON.stringify({ adapter: id2 }));
    expect(await act2.json()).toMatchObject({
      delta_id: "es-admin-2",
      adapter_id: id2,
      scale: 1,
      previous_delta_id: "es-admin-1",
      previous_adapter_id: id1,
      previous_scale: 0.5,
    });
    expect(await chatIn("es", "Buenos días a todos")).toEqual({ header: "es-admin-2", sent: ["es-admin-2"] });

    const langs = (await (await admin_("GET", "/admin/languages")).json()) as {
      data: { language: string; delta_id: string }[];
    };
    expect(langs.data.find((l) => l.language === "es")?.delta_id).toBe("es-admin-2");

    const back = await admin_("POST", "/admin/languages/es/rollback");
    expect(back.status).toBe(200);
    expect(await back.json()).toMatchObject({
      delta_id: "es-admin-1",
      adapter_id: id1,
      scale: 0.5,
      previous_delta_id: "es-admin-2",
      previous_adapter_id: id2,
      previous_scale: 1,
    });
    expect(await chatIn("es", "Buenos días a todos")).toEqual({ header: "es-admin-1", sent: ["es-admin-1"] });

    // The active version cannot be deleted; the inactive one can, blobs included.
    const before = await stored();
    const refused = await admin_("DELETE", `/admin/adapters/${id1}`);
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("adapter_active");
    expect(await stored()).toEqual(before);

    const sha2 = await sha256Hex(v2.bytes);
    const del = await admin_("DELETE", `/admin/adapters/${id2}`);
    expect(del.status).toBe(200);
    expect((await admin_("GET", `/admin/adapters/${id2}`)).status).toBe(404);
    expect(await env.ADAPTERS.head(blobKey(sha2))).toBeNull();
    expect(await env.ADAPTERS.head(manifestKey(sha2))).toBeNull();
    expect(await env.ADAPTERS.head(blobKey(sha))).not.toBeNull();

    // Rolling back to a deleted version is refused; nothing changes.
    const noBack = await admin_("POST", "/admin/languages/es/rollback");
    expect(noBack.status).toBe(409);
    expect(((await noBack.json()) as { error: { code: string } }).error.code).toBe("previous_adapter_deleted");

    // null turns the language off: base model again, and then the adapter may go.
    const off = await admin_("PUT", "/admin/languages/es", JSON.stringify({ adapter: null }));
    expect(off.status).toBe(200);
    expect(await chatIn("es", "Buenos días a todos")).toEqual({ header: "none", sent: [null] });
    expect((await admin_("DELETE", `/admin/adapters/${id1}`)).status).toBe(200);
    expect(await env.ADAPTERS.head(blobKey(sha))).toBeNull();
  });

  it("answers 200 with the existing row when the same content comes again", async () => {
    const d = delta("es-again-1", 21);
    const first = await upload(d);
    expect(first.status).toBe(201);
    const before = await stored();
    const second = await upload(d);
    expect(second.status).toBe(200);
    expect(((await second.json()) as { id: string }).id).toBe(((await first.json()) as { id: string }).id);
    expect(await stored()).toEqual(before);
  });

  it("restores the blobs when the same content is uploaded again after they went missing", async () => {
    // What a delete racing an upload of the same content can leave: the row without its blobs.
    const d = delta("es-repair-1", 27);
    const first = await upload(d);
    expect(first.status).toBe(201);
    const sha = await sha256Hex(d.bytes);
    await env.ADAPTERS.delete([blobKey(sha), manifestKey(sha)]);
    const again = await upload(d);
    expect(again.status).toBe(200);
    const blob = await env.ADAPTERS.get(blobKey(sha));
    expect(blob).not.toBeNull();
    expect(new Uint8Array(await blob!.arrayBuffer())).toEqual(d.bytes);
    const manifest = await env.ADAPTERS.get(manifestKey(sha));
    expect(((await manifest!.json()) as { id: string }).id).toBe("es-repair-1");
  });

  it("keeps one row and one blob when the same content is uploaded twice at once", async () => {
    const d = delta("es-race-1", 31);
    const sha = await sha256Hex(d.bytes);
    const results = await Promise.all([upload(d), upload(d), upload(d)]);
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 201]);
    const ids = new Set(await Promise.all(results.map(async (r) => ((await r.json()) as { id: string }).id)));
    expect(ids.size).toBe(1);
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM adapters WHERE sha256 = ?1")
      .bind(sha)
      .first<{ n: number }>();
    expect(rows?.n).toBe(1);
    const objects = (await env.ADAPTERS.list({ prefix: `deltas/${sha}` })).objects.map((o) => o.key).sort();
    expect(objects).toEqual([manifestKey(sha), blobKey(sha)].sort());
  });

  it("refuses a second content under a delta id already taken", async () => {
    expect((await upload(delta("es-taken-1", 41))).status).toBe(201);
    const before = await stored();
    const res = await upload(delta("es-taken-1", 42));
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("delta_id_taken");
    expect(await stored()).toEqual(before);
  });
});

describe("refused uploads store nothing", () => {
  const good = () => delta("es-bad-1", 51);
  const nan = () => {
    const d = good();
    const bytes = d.bytes.slice();
    new DataView(bytes.buffer).setFloat32(bytes.byteLength - 4, Number.NaN, true);
    return { manifest: d.manifest, bytes };
  };
  const cases: {
    name: string;
    make: () => { manifest: unknown; bytes?: Uint8Array };
    status: number;
    code: string;
    overrides?: Overrides;
  }[] = [
    {
      name: "a missing manifest field",
      make: () => ({ manifest: undefined, bytes: good().bytes }),
      status: 400,
      code: "bad_request",
    },
    { name: "a missing tensors field", make: () => ({ manifest: good().manifest }), status: 400, code: "bad_request" },
    {
      name: "a manifest that is not JSON",
      make: () => ({ manifest: "{not json", bytes: good().bytes }),
      status: 400,
      code: "manifest_invalid",
    },
    {
      name: "a manifest with a misspelt field",
      make: () => ({ manifest: { ...good().manifest, hiddenSize: 8 }, bytes: good().bytes }),
      status: 400,
      code: "manifest_invalid",
    },
    {
      name: "a delta for another model's fingerprint",
      make: () => delta("es-bad-1", 51, "es", { fingerprint: `sha256:${"cd".repeat(32)}` }),
      status: 409,
      code: "fingerprint_mismatch",
    },
    {
      name: "a hidden size the model does not have",
      make: () => delta("es-bad-1", 51, "es", { hiddenSize: 16 }),
      status: 400,
      code: "bad_shape",
    },
    {
      name: "a layer past the model's last",
      make: () => delta("es-bad-1", 51, "es", { layers: [3, 4] }),
      status: 400,
      code: "layer_out_of_range",
    },
    {
      name: "a file that is not safetensors",
      make: () => ({ manifest: good().manifest, bytes: new TextEncoder().encode("definitely not safetensors") }),
      status: 400,
      code: "bad_header",
    },
    {
      name: "float32 tensors under a float16 manifest",
      make: () => ({ manifest: { ...good().manifest, dtype: "float16" }, bytes: good().bytes }),
      status: 400,
      code: "bad_dtype",
    },
    {
      name: "a rank the tensors do not have",
      make: () => ({ manifest: { ...good().manifest, rank: 3 }, bytes: good().bytes }),
      status: 400,
      code: "bad_shape",
    },
    {
      name: "a tensor missing",
      make: () => ({ manifest: { ...good().manifest, layers: [1, 2, 3] }, bytes: good().bytes }),
      status: 400,
      code: "missing_tensor",
    },
    {
      name: "a tensor the manifest does not name",
      make: () => ({ manifest: { ...good().manifest, layers: [2] }, bytes: good().bytes }),
      status: 400,
      code: "unexpected_tensor",
    },
    { name: "a NaN in a tensor", make: nan, status: 400, code: "non_finite" },
    {
      name: "an empty header",
      make: () => ({ manifest: good().manifest, bytes: rawSafetensors({}) }),
      status: 400,
      code: "missing_tensor",
    },
    {
      name: "a file over the size limit",
      make: good,
      status: 413,
      code: "too_large",
      overrides: { MAX_ADAPTER_BYTES: "100" } as Overrides,
    },
    {
      name: "a base model no backend serves",
      make: () => ({
        manifest: { ...good().manifest, base_model: { ...good().manifest.base_model, id: "no-such-model" } },
        bytes: good().bytes,
      }),
      status: 503,
      code: "backend_unavailable",
    },
    {
      name: "no backend reachable",
      make: good,
      status: 503,
      code: "backend_unavailable",
      overrides: { BACKEND_URLS: backends["refused"]! },
    },
  ];

  for (const c of cases) {
    it(`refuses ${c.name} with ${c.status} ${c.code}`, async () => {
      const before = await stored();
      const res = await upload(c.make(), c.overrides);
      expect(res.status).toBe(c.status);
      const body = (await res.json()) as { error: { code: string; message: string; type: string } };
      expect(body.error.code).toBe(c.code);
      expect(body.error.message.length).toBeGreaterThan(10);
      expect(await stored()).toEqual(before);
    });
  }

  it("refuses a body that is not multipart", async () => {
    const before = await stored();
    const res = await admin_("POST", "/admin/adapters", JSON.stringify(good().manifest));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("bad_request");
    expect(await stored()).toEqual(before);
  });
});

describe("admin checks", () => {
  it("refuses a client key with 403", async () => {
    const res = await admin_(
      "POST",
      "/admin/adapters",
      form(delta("es-client-1", 61).manifest, delta("es-client-1", 61).bytes),
      {},
      client,
    );
    expect(res.status).toBe(403);
    expect((await admin_("GET", "/admin/languages", undefined, {}, client)).status).toBe(403);
  });

  it("refuses unknown languages, unknown adapters and another language's adapter", async () => {
    const unknownLang = await admin_("PUT", "/admin/languages/xx", JSON.stringify({ adapter: null }));
    expect(unknownLang.status).toBe(400);
    expect(((await unknownLang.json()) as { error: { code: string } }).error.code).toBe("unknown_language");
    expect((await admin_("POST", "/admin/languages/xx/rollback")).status).toBe(400);
    const unknownAdapter = await admin_("PUT", "/admin/languages/es", JSON.stringify({ adapter: "ad_nope" }));
    expect(unknownAdapter.status).toBe(404);
    const d = delta("ko-admin-1", 71, "ko");
    const id = ((await (await upload(d)).json()) as { id: string }).id;
    const mismatch = await admin_("PUT", "/admin/languages/ja", JSON.stringify({ adapter: id }));
    expect(mismatch.status).toBe(400);
    expect(((await mismatch.json()) as { error: { code: string } }).error.code).toBe("language_mismatch");
    const badScale = await admin_("PUT", "/admin/languages/ko", JSON.stringify({ adapter: id, scale: 9 }));
    expect(badScale.status).toBe(400);
    const nothing = await admin_("POST", "/admin/languages/ko/rollback");
    expect(nothing.status).toBe(409);
    const rows = await env.DB.prepare("SELECT language FROM language_deltas WHERE language IN ('ja', 'ko')").all();
    expect(rows.results).toEqual([]);
    expect((await admin_("DELETE", "/admin/adapters/ad_nope")).status).toBe(404);
  });
});

describe("a backend without the active delta", () => {
  const strict = { BACKEND_URLS: backends["strict"]! };

  async function chatOnStrict(language: string, content: string) {
    const res = await postChat(client, { model: TEST_MODEL, messages: [{ role: "user", content }] }, strict, {
      "x-lens-language": language,
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { message: { content: string } }[] };
    expect(body.choices[0]?.message.content).toBe(`You said: ${content}`);
    const id = res.headers.get("x-request-id")!;
    return {
      header: res.headers.get("x-lens-delta"),
      sent: (await backendLog("strict")).filter((r) => r.request_id === id).map((r) => r.delta),
    };
  }

  async function held(): Promise<DeltaManifest[]> {
    return (
      (await (
        await fetch(`${backends["strict"]}/internal/v1/deltas`, {
          headers: { authorization: backendAuthorization(TEST_BACKEND_SECRET) },
        })
      ).json()) as { deltas: DeltaManifest[] }
    ).deltas;
  }

  it("gets it from R2, and the retried request carries it", async () => {
    const d = delta("hi-sync-1", 81, "hi");
    const res = await upload(d, strict);
    expect(res.status).toBe(201);
    const id = ((await res.json()) as { id: string }).id;
    expect((await admin_("PUT", "/admin/languages/hi", JSON.stringify({ adapter: id }))).status).toBe(200);
    expect((await held()).map((m) => m.id)).not.toContain("hi-sync-1");

    expect(await chatOnStrict("hi", "namaste dosto")).toEqual({
      header: "hi-sync-1",
      sent: ["hi-sync-1", "hi-sync-1"],
    });
    expect((await held()).find((m) => m.id === "hi-sync-1")).toEqual(d.manifest);
    // Held now: the next request goes through at once.
    expect(await chatOnStrict("hi", "namaste phir se")).toEqual({ header: "hi-sync-1", sent: ["hi-sync-1"] });
  });

  it("serves the base model when the delta has no adapter row", async () => {
    await env.DB.prepare(
      "INSERT INTO language_deltas (language, delta_id, scale, updated_at) VALUES ('th', 'th-orphan-1', 1, 0)",
    ).run();
    const { forgetActiveDeltas } = await import("../../src/gateway/services/deltas/active-deltas.js");
    forgetActiveDeltas();
    expect(await chatOnStrict("th", "sawasdee krap")).toEqual({ header: "none", sent: ["th-orphan-1", null] });
    expect((await held()).map((m) => m.id)).not.toContain("th-orphan-1");
  });

  it("serves the base model when the blob is gone from R2", async () => {
    const d = delta("bn-sync-1", 91, "bn");
    const row = (await (await upload(d, strict)).json()) as { id: string; r2_key: string };
    await env.ADAPTERS.delete(row.r2_key);
    expect((await admin_("PUT", "/admin/languages/bn", JSON.stringify({ adapter: row.id }))).status).toBe(200);
    expect(await chatOnStrict("bn", "nomoskar bondhu")).toEqual({ header: "none", sent: ["bn-sync-1", null] });
    expect((await held()).map((m) => m.id)).not.toContain("bn-sync-1");
  });
});
