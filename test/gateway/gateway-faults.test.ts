/**
 * The fault matrix, gateway side (docs/faults.md): each row injects one fault with a stand-in
 * backend (dev/stand-in-backend.ts) or a wrapped binding, and asserts both what the client
 * sees and what is recorded (the D1 `requests` row, adapters rows and R2 objects).
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { GatewayBindings } from "../../src/gateway/env.js";
import { createKey } from "../../src/gateway/services/api-keys.js";
import { blobKey, manifestKey } from "../../src/gateway/services/deltas/adapters.js";
import { preferenceOrder } from "../../src/gateway/services/backends/affinity.js";
import type { RequestRecordRow } from "../../src/gateway/services/request-records.js";
import worker from "../../src/gateway/index.js";
import { GENERATE_PATH, MODELS_PATH, NDJSON_CONTENT_TYPE, backendAuthorization } from "../../src/protocol/backend.js";
import { DELTAS_PATH } from "../../src/protocol/delta.js";
import { LANGUAGES } from "../../src/protocol/languages.js";
import { TEST_BACKEND_SECRET, echoReply } from "../../dev/echo.js";
import { makeDelta } from "../../dev/make-delta.js";
import { type Overrides, TEST_MODEL, backendLog, backends, postChatTracked, sseData, until } from "./helpers.js";

let client: string;
let admin: string;
beforeAll(async () => {
  client = (await createKey(env.DB, "client", "faults-client")).key;
  admin = (await createKey(env.DB, "admin", "faults-admin")).key;
});

async function records(id: string): Promise<RequestRecordRow[]> {
  return (await env.DB.prepare("SELECT * FROM requests WHERE id = ?1").bind(id).all<RequestRecordRow>()).results;
}

/** Exactly one record for the request, once its waitUntil work is done. */
async function theRecord(id: string): Promise<RequestRecordRow> {
  const found = await until(async () => {
    const r = await records(id);
    return r.length > 0 ? r : undefined;
  });
  expect(found).toHaveLength(1);
  return found[0]!;
}

const hello = { model: TEST_MODEL, messages: [{ role: "user", content: "hello routing" }] };
const errorCode = async (res: Response) => ((await res.json()) as { error: { code: string; type: string } }).error;

/** A streamed reply: its SSE payloads, the one error event and whether [DONE] came. */
async function readStream(res: Response) {
  const events = sseData(await res.text());
  const errors = events.filter((e) => e.startsWith('{"error"'));
  return { events, errors, done: events.includes("[DONE]") };
}

describe("fault 1: a backend gone before the first byte", () => {
  it("sends the request to the other backend: a normal answer and one record with status 200", async () => {
    const urls = [backends["refused"]!, backends["echoB"]!];
    // A language whose first choice is the dead backend (health aside).
    const lang = LANGUAGES.find((l) => preferenceOrder(urls, l, () => false)[0] === backends["refused"])!;
    expect(lang).toBeDefined();
    const { res, settle } = await postChatTracked(
      client,
      hello,
      { BACKEND_URLS: urls.join(",") },
      { "x-lens-language": lang },
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      choices: [{ message: { content: echoReply("hello routing") }, finish_reason: "stop" }],
    });
    const id = res.headers.get("x-request-id")!;
    await settle();
    expect((await backendLog("echoB")).filter((r) => r.request_id === id)).toHaveLength(1);
    expect(await theRecord(id)).toMatchObject({ status: 200, finish_reason: "stop", language: lang, stream: 0 });
  });
});

describe("fault 2: a backend that dies mid-stream", () => {
  it("ends the stream with exactly one error event and no [DONE]; the record says error", async () => {
    const { res, settle } = await postChatTracked(
      client,
      { ...hello, stream: true },
      { BACKEND_URLS: backends["die"] },
    );
    expect(res.status).toBe(200);
    const { events, errors, done } = await readStream(res);
    expect(errors).toHaveLength(1);
    expect(events.at(-1)).toBe(errors[0]);
    expect(JSON.parse(errors[0]!).error.code).toBe("backend_error");
    expect(done).toBe(false);
    await settle();
    const row = await theRecord(res.headers.get("x-request-id")!);
    expect(row).toMatchObject({ status: 200, finish_reason: "error", stream: 1 });
    expect(row.ttft_ms).not.toBeNull();
  });
});

describe("fault 3: a backend that hangs", () => {
  it("answers 504 when no headers come in time; the record has status 504", async () => {
    const { res, settle } = await postChatTracked(client, hello, {
      BACKEND_URLS: backends["hang"],
      BACKEND_TIMEOUT_MS: "300",
    });
    expect(res.status).toBe(504);
    expect(await errorCode(res)).toMatchObject({ code: "backend_timeout", type: "server_error" });
    await settle();
    expect(await theRecord(res.headers.get("x-request-id")!)).toMatchObject({
      status: 504,
      finish_reason: "error",
      ttft_ms: null,
    });
  });

  it("streaming: a hang before the headers is a 504 as well, and recorded as such", async () => {
    const { res, settle } = await postChatTracked(
      client,
      { ...hello, stream: true },
      { BACKEND_URLS: backends["hang"], BACKEND_TIMEOUT_MS: "300" },
    );
    expect(res.status).toBe(504);
    expect((await errorCode(res)).code).toBe("backend_timeout");
    await settle();
    expect(await theRecord(res.headers.get("x-request-id")!)).toMatchObject({
      status: 504,
      finish_reason: "error",
      stream: 1,
    });
  });

  it("a backend that goes silent mid-stream: one timeout error event; recorded as error", async () => {
    const { res, settle } = await postChatTracked(
      client,
      { ...hello, stream: true },
      { BACKEND_URLS: backends["stall"], BACKEND_IDLE_TIMEOUT_MS: "300" },
    );
    expect(res.status).toBe(200);
    const { errors, done } = await readStream(res);
    expect(errors.map((e) => JSON.parse(e).error.code)).toEqual(["backend_timeout"]);
    expect(done).toBe(false);
    await settle();
    expect(await theRecord(res.headers.get("x-request-id")!)).toMatchObject({
      status: 200,
      finish_reason: "error",
      stream: 1,
    });
  });
});

describe("fault 4: a backend that sends malformed frames", () => {
  it("without streaming: a clean 502; the record has status 502", async () => {
    const { res, settle } = await postChatTracked(client, hello, { BACKEND_URLS: backends["malformed"] });
    expect(res.status).toBe(502);
    expect(await errorCode(res)).toMatchObject({ code: "backend_error", type: "server_error" });
    await settle();
    expect(await theRecord(res.headers.get("x-request-id")!)).toMatchObject({
      status: 502,
      finish_reason: "error",
      stream: 0,
    });
  });

  it("mid-stream: one error event, no [DONE]; the record says error", async () => {
    const { res, settle } = await postChatTracked(
      client,
      { ...hello, stream: true },
      { BACKEND_URLS: backends["malformed"] },
    );
    expect(res.status).toBe(200);
    const { events, errors, done } = await readStream(res);
    expect(errors).toHaveLength(1);
    expect(JSON.parse(errors[0]!).error.message).toMatch(/broke the protocol/);
    expect(events.at(-1)).toBe(errors[0]);
    expect(done).toBe(false);
    await settle();
    expect(await theRecord(res.headers.get("x-request-id")!)).toMatchObject({
      status: 200,
      finish_reason: "error",
      stream: 1,
    });
  });
});

/**
 * A backend that answers its models route and then breaks the protocol before any start frame:
 * global fetch is wrapped for one made-up host for the duration of `body` (the gateway calls the
 * global fetch at each request), everything else goes through.
 */
async function withBrokenBackend<T>(generate: () => Response, body: (url: string) => Promise<T>): Promise<T> {
  const host = `broken-${crypto.randomUUID()}.test`;
  const real = globalThis.fetch;
  globalThis.fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    if (url.host !== host) return real(input, init);
    if (url.pathname === MODELS_PATH)
      return Response.json({ models: [{ id: TEST_MODEL, created: 1_700_000_000, owned_by: "lens-test" }] });
    if (url.pathname === GENERATE_PATH) return generate();
    return Response.json({ error: { code: "invalid_request", message: "no such route" } }, { status: 404 });
  }) as typeof fetch;
  try {
    return await body(`http://${host}`);
  } finally {
    globalThis.fetch = real;
  }
}

describe("fault 4: a backend whose answer is malformed before any frame", () => {
  const ndjson = (text: string) => () => new Response(text, { headers: { "content-type": NDJSON_CONTENT_TYPE } });
  const cases = [
    { name: "a first line that is not a frame", generate: ndjson("this is not a frame\n") },
    {
      name: "a text frame before the start frame",
      generate: ndjson(`${JSON.stringify({ type: "text", text: "hi" })}\n`),
    },
    { name: "a body that ends before any frame", generate: ndjson("") },
    {
      name: "a 500 with an HTML body",
      generate: () => new Response("<html>oops</html>", { status: 500, headers: { "content-type": "text/html" } }),
    },
  ];
  for (const c of cases) {
    for (const stream of [false, true]) {
      it(`${c.name}, ${stream ? "streaming" : "not streaming"}: a clean 502; the record has status 502`, async () => {
        await withBrokenBackend(c.generate, async (url) => {
          const { res, settle } = await postChatTracked(client, { ...hello, stream }, { BACKEND_URLS: url });
          expect(res.status).toBe(502);
          expect(res.headers.get("content-type")).toMatch(/^application\/json/);
          expect(await errorCode(res)).toMatchObject({ code: "backend_error", type: "server_error" });
          await settle();
          expect(await theRecord(res.headers.get("x-request-id")!)).toMatchObject({
            status: 502,
            finish_reason: "error",
            stream: stream ? 1 : 0,
            ttft_ms: null,
          });
        });
      });
    }
  }
});

// ------------------------------------------------------------------------------------------------
// Adapters: uploads through the gateway with wrapped bindings.

function delta(id: string, seed: number, language: "hi" | "bn" | "es" | "ko" = "es") {
  const d = makeDelta({ hiddenSize: 8, layers: [2, 3], rank: 2, language, id, seed });
  d.manifest.base_model.id = TEST_MODEL;
  return d;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Calls the worker with these bindings and waits for its waitUntil work. */
async function call(
  bindings: Partial<GatewayBindings>,
  method: string,
  path: string,
  body?: BodyInit,
  headers: Record<string, string> = {},
): Promise<Response> {
  const ctx = createExecutionContext();
  const full = {
    ...env,
    BACKEND_URLS: backends["echo"],
    BACKEND_SECRET: TEST_BACKEND_SECRET,
    ...bindings,
  } as GatewayBindings;
  const init: RequestInit = { method, headers: { authorization: `Bearer ${admin}`, ...headers } };
  if (body !== undefined) init.body = body;
  const res = await worker.fetch(new Request(`http://gateway.test${path}`, init), full, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

function uploadForm(d: { manifest: unknown; bytes: Uint8Array }): FormData {
  const f = new FormData();
  f.set("manifest", JSON.stringify(d.manifest));
  f.set("tensors", new File([d.bytes as Uint8Array<ArrayBuffer>], "delta.safetensors"));
  return f;
}

/** Every adapters row and every R2 key. */
async function stored() {
  const rows = await env.DB.prepare("SELECT id, sha256 FROM adapters ORDER BY id").all<{
    id: string;
    sha256: string;
  }>();
  const objects = (await env.ADAPTERS.list()).objects.map((o) => o.key).sort();
  return { rows: rows.results, objects };
}

/** The real bucket, except that the n-th put (1-based) and every later one throws. */
function bucketFailingAtPut(n: number): R2Bucket {
  const real = env.ADAPTERS;
  let puts = 0;
  return {
    put: (...args: Parameters<R2Bucket["put"]>) => {
      puts++;
      if (puts >= n) return Promise.reject(new Error("R2 is unavailable"));
      return real.put(...args);
    },
    get: real.get.bind(real),
    head: real.head.bind(real),
    delete: real.delete.bind(real),
    list: real.list.bind(real),
  } as unknown as R2Bucket;
}

/** The real database, except that statements whose SQL matches `failing` throw on run/all/first and batches throw. */
function dbFailing(failing: RegExp): D1Database {
  const real = env.DB;
  const fail = () => Promise.reject(new Error("D1 is unavailable"));
  const wrap = (sql: string, stmt: D1PreparedStatement): D1PreparedStatement => {
    if (!failing.test(sql)) return stmt;
    return {
      bind: (...values: unknown[]) => wrap(sql, stmt.bind(...values)),
      run: fail,
      all: fail,
      first: fail,
      raw: fail,
    } as unknown as D1PreparedStatement;
  };
  return {
    prepare: (sql: string) => wrap(sql, real.prepare(sql)),
    batch: fail,
    exec: fail,
    dump: fail,
    withSession: () => {
      throw new Error("D1 is unavailable");
    },
  } as unknown as D1Database;
}

describe("fault 6: R2 or D1 failing during an adapter upload", () => {
  const cases: { name: string; bindings: () => Partial<GatewayBindings> }[] = [
    { name: "R2 fails on the first put (the manifest)", bindings: () => ({ ADAPTERS: bucketFailingAtPut(1) }) },
    {
      name: "R2 fails on the second put (the tensors, after the manifest was stored)",
      bindings: () => ({ ADAPTERS: bucketFailingAtPut(2) }),
    },
    {
      name: "D1 fails on the insert (after both blobs were stored)",
      bindings: () => ({ DB: dbFailing(/^INSERT INTO adapters/) }),
    },
    { name: "D1 fails on every adapters statement", bindings: () => ({ DB: dbFailing(/adapters/) }) },
  ];
  let seed = 600;
  for (const c of cases) {
    it(`${c.name}: a clean 5xx, and no row without its blob nor blob without its row`, async () => {
      // The key is checked once against the real D1 first, so that auth is served from the isolate's cache.
      expect((await call({}, "GET", "/admin/adapters")).status).toBe(200);
      const before = await stored();
      const d = delta(`es-fault-${seed}`, seed++);
      const res = await call(c.bindings(), "POST", "/admin/adapters", uploadForm(d));
      expect(res.status).toBe(500);
      const body = (await res.json()) as { error: { type: string; code: string; message: string } };
      expect(body.error).toMatchObject({ type: "server_error", code: "internal_error" });
      expect(body.error.message).not.toMatch(/unavailable/); // the cause is not leaked
      expect(await stored()).toEqual(before);
      // With the stores back, the same upload goes through and leaves one row and its two objects.
      const again = await call({}, "POST", "/admin/adapters", uploadForm(d));
      expect(again.status).toBe(201);
      const sha = await sha256Hex(d.bytes);
      const after = await stored();
      expect(after.rows.filter((r) => r.sha256 === sha)).toHaveLength(1);
      expect(after.objects.filter((k) => k.includes(sha)).sort()).toEqual([blobKey(sha), manifestKey(sha)].sort());
    });
  }
});

describe("fault 5: a delta missing from the backend", () => {
  const strict: Overrides = { BACKEND_URLS: backends["strict"]! };

  async function activate(language: string, adapterId: string) {
    const res = await call(strict, "PUT", `/admin/languages/${language}`, JSON.stringify({ adapter: adapterId }), {
      "content-type": "application/json",
    });
    expect(res.status).toBe(200);
  }

  it("is fetched from R2, PUT to the backend and the request retried once: x-lens-delta names it, and so does the record", async () => {
    const d = delta("hi-fault-1", 701, "hi");
    const up = await call(strict, "POST", "/admin/adapters", uploadForm(d));
    expect(up.status).toBe(201);
    await activate("hi", ((await up.json()) as { id: string }).id);
    const { res, settle } = await postChatTracked(client, hello, strict, { "x-lens-language": "hi" });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-lens-delta")).toBe("hi-fault-1");
    expect(await res.json()).toMatchObject({ choices: [{ message: { content: echoReply("hello routing") } }] });
    const id = res.headers.get("x-request-id")!;
    expect((await backendLog("strict")).filter((r) => r.request_id === id).map((r) => r.delta)).toEqual([
      "hi-fault-1",
      "hi-fault-1",
    ]);
    // The backend holds it now, exactly as uploaded.
    const held = await fetch(`${backends["strict"]}${DELTAS_PATH}`, {
      headers: { authorization: backendAuthorization(TEST_BACKEND_SECRET) },
    });
    expect(((await held.json()) as { deltas: unknown[] }).deltas).toContainEqual(d.manifest);
    await settle();
    expect(await theRecord(id)).toMatchObject({
      status: 200,
      finish_reason: "stop",
      delta_id: "hi-fault-1",
      language: "hi",
    });
  });

  it("when its blob is gone from R2, the base model answers: x-lens-delta none, record delta_id null", async () => {
    const d = delta("bn-fault-1", 702, "bn");
    const up = await call(strict, "POST", "/admin/adapters", uploadForm(d));
    expect(up.status).toBe(201);
    const row = (await up.json()) as { id: string; r2_key: string };
    await env.ADAPTERS.delete(row.r2_key);
    await activate("bn", row.id);
    const { res, settle } = await postChatTracked(client, hello, strict, { "x-lens-language": "bn" });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-lens-delta")).toBe("none");
    const id = res.headers.get("x-request-id")!;
    expect((await backendLog("strict")).filter((r) => r.request_id === id).map((r) => r.delta)).toEqual([
      "bn-fault-1",
      null,
    ]);
    await settle();
    expect(await theRecord(id)).toMatchObject({ status: 200, finish_reason: "stop", delta_id: null, language: "bn" });
  });
});

describe("fault 8: a client that disconnects", () => {
  it("cancels the backend's generation and leaves one disconnected record", async () => {
    const words = Array.from({ length: 60 }, (_, i) => `w${i}`).join(" ");
    const { res, settle } = await postChatTracked(
      client,
      { model: TEST_MODEL, stream: true, messages: [{ role: "user", content: words }] },
      { BACKEND_URLS: backends["slow"] },
    );
    const id = res.headers.get("x-request-id")!;
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    await reader.cancel();
    await settle();
    // The stand-in sees its response stream closed before the end.
    const sent = await until(async () => {
      const log = (await backendLog("slow")).filter((r) => r.request_id === id);
      return log.length === 1 && log[0]!.outcome !== "open" ? log : undefined;
    });
    expect(sent[0]!.outcome).toBe("aborted");
    expect(await theRecord(id)).toMatchObject({ status: 200, finish_reason: "disconnected", stream: 1 });
  });
});
