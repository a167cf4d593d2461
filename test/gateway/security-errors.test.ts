/**
 * Internal failures of the gateway are answered without stack traces, secrets or the thrown
 * message: a D1 binding that throws (before auth and after it), an R2 binding that throws, and
 * backends that answer garbage (HTML error pages with stack traces, JSON outside the protocol,
 * broken NDJSON, connection errors). Every route of the app is walked under each fault; every
 * answer must be free of stack markers, the fake secret in the thrown messages, the API key and
 * the backends' shared secret.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { GatewayBindings } from "../../src/gateway/env.js";
import worker from "../../src/gateway/index.js";
import { TEST_BACKEND_SECRET } from "../../dev/echo.js";
import { backends, newKey } from "./helpers.js";

/** The part of every thrown message that must never reach a client. */
const LEAKED = "sk-live-LEAKED-4f3e2d1c";
const STACK = `Error: connect to postgres://admin:${LEAKED}@db.internal failed\n    at query (/srv/gateway/node_modules/d1/index.ts:12:5)`;
const STACK_MARKERS = ["    at ", ".ts:", "node_modules", "Error:"];

function boom(): Error {
  const err = new Error(`D1_ERROR: connect to postgres://admin:${LEAKED}@db.internal failed (/srv/gateway/src/x.ts:1)`);
  err.stack = STACK;
  return err;
}

/** A D1 binding whose statements fail unless `passes(sql)`; batch and exec always fail. */
function faultyDb(real: D1Database, passes: (sql: string) => boolean): D1Database {
  const failing: Record<string, unknown> = {};
  failing["bind"] = () => failing;
  for (const m of ["first", "all", "run", "raw"]) failing[m] = () => Promise.reject(boom());
  return new Proxy(real, {
    get(target, prop) {
      if (prop === "prepare") return (sql: string) => (passes(sql) ? target.prepare(sql) : failing);
      if (prop === "batch" || prop === "exec" || prop === "dump") return () => Promise.reject(boom());
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** An R2 binding whose every call fails. */
function faultyBucket(): R2Bucket {
  return new Proxy({} as R2Bucket, {
    get: () => () => Promise.reject(boom()),
  });
}

type Fetcher = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;

/** Backends that answer garbage, by kind; each leaks the fake secret if echoed. */
const GARBAGE: Record<string, Fetcher> = {
  "an HTML error page with a stack trace": async () =>
    new Response(`<html><body><h1>500</h1><pre>${STACK}</pre></body></html>`, {
      status: 500,
      headers: { "content-type": "text/html" },
    }),
  "a plain-text 502 with a stack trace": async () => new Response(STACK, { status: 502 }),
  "JSON outside the protocol": async () =>
    new Response(JSON.stringify({ error: { code: "db_failure", message: STACK }, stack: STACK, secret: LEAKED }), {
      status: 500,
      headers: { "content-type": "application/json" },
    }),
  "a 200 with JSON outside the protocol": async () =>
    new Response(JSON.stringify({ models: [{ id: LEAKED, stack: STACK }], ok: "yes", model: 7, trace: STACK }), {
      status: 200,
      headers: { "content-type": "application/json" },
    }),
  "broken NDJSON": async () =>
    new Response(`{"type":"start"\n${STACK}\n{"type":"text","text":${JSON.stringify(LEAKED)}`, {
      status: 200,
      headers: { "content-type": "application/x-ndjson" },
    }),
  "a connection error": async () => {
    throw boom();
  },
};

function bindings(over: Partial<GatewayBindings>): GatewayBindings {
  return { ...env, BACKEND_URLS: backends["echo"], BACKEND_SECRET: TEST_BACKEND_SECRET, ...over } as GatewayBindings;
}

async function send(
  b: GatewayBindings,
  method: string,
  path: string,
  key: string | null,
  body?: string,
): Promise<{ status: number; text: string; headers: Headers }> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`http://gateway.test${path}`, {
      method,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), "content-type": "application/json" },
      ...(body !== undefined ? { body } : {}),
    }),
    b,
    ctx,
  );
  const text = await res.text();
  // Work left for after the answer (request records) runs against the faulty bindings too.
  await waitOnExecutionContext(ctx).catch(() => {});
  return { status: res.status, text, headers: res.headers };
}

function expectClean(a: { status: number; text: string; headers: Headers }, where: string, keys: string[]): void {
  let all = a.text;
  a.headers.forEach((v, k) => {
    all += `\n${k}: ${v}`;
  });
  for (const marker of STACK_MARKERS)
    expect(all.includes(marker), `${where}: '${marker}' in ${a.text.slice(0, 300)}`).toBe(false);
  expect(all, where).not.toContain(LEAKED);
  expect(all, where).not.toContain("postgres://");
  expect(all, where).not.toContain("/srv/gateway");
  expect(all, where).not.toContain(TEST_BACKEND_SECRET);
  for (const key of keys) expect(all, where).not.toContain(key);
  if (a.status >= 400) {
    const body = JSON.parse(a.text) as { error: Record<string, unknown> };
    expect(Object.keys(body.error).sort(), where).toEqual(["code", "message", "param", "type"]);
  }
}

/** The app's endpoints, with sample values for path parameters and a body that gets past validation where easy. */
function endpoints(): Array<{ method: string; path: string; body?: string }> {
  const seen = new Set<string>();
  const out: Array<{ method: string; path: string; body?: string }> = [];
  for (const r of worker.routes) {
    if (r.method === "ALL" || seen.has(`${r.method} ${r.path}`)) continue;
    seen.add(`${r.method} ${r.path}`);
    const path = r.path.replace(/:([A-Za-z_][A-Za-z0-9_]*)(\{[^}]*\})?\??/g, (_, name: string) =>
      name === "lang"
        ? "sw"
        : name === "id" && r.path.includes("/lens/jobs")
          ? "job-abc123-0000aaaa"
          : "sample-id-0001",
    );
    const bodies: Record<string, string> = {
      "POST /v1/chat/completions": JSON.stringify({
        model: "lens-test-echo",
        messages: [{ role: "user", content: "Habari yako rafiki" }],
      }),
      "POST /admin/lens/jobs": JSON.stringify({ kind: "probe", languages: ["en", "sw"], layers: [0] }),
    };
    const body = r.method === "GET" || r.method === "HEAD" ? undefined : (bodies[`${r.method} ${r.path}`] ?? "{}");
    out.push({ method: r.method, path, ...(body !== undefined ? { body } : {}) });
  }
  return out;
}

const keyFor = (path: string, keys: { client: string; admin: string }) =>
  path.startsWith("/v1/") ? keys.client : path.startsWith("/admin/") ? keys.admin : null;

describe("gateway: no secrets or stack traces in errors", () => {
  afterEach(() => {
    vi.restoreAllMocks();
    vi.unstubAllGlobals();
  });

  it("a D1 binding that throws on every query: every route answers a clean 500 (or works without D1)", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const keys = { client: await newKey("client"), admin: await newKey("admin") };
    const b = bindings({ DB: faultyDb(env.DB, () => false) });
    let internal = 0;
    for (const e of endpoints()) {
      const a = await send(b, e.method, e.path, keyFor(e.path, keys), e.body);
      expectClean(a, `${e.method} ${e.path}`, [keys.client, keys.admin]);
      if (a.status === 500) {
        expect((JSON.parse(a.text) as { error: { code: string } }).error.code).toBe("internal_error");
        internal++;
      }
    }
    expect(internal).toBeGreaterThan(10);
    // The operator's log gets the details.
    expect(errors).toHaveBeenCalled();
  });

  it("a D1 binding that fails after auth: every route answers cleanly", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const keys = { client: await newKey("client"), admin: await newKey("admin") };
    const b = bindings({ DB: faultyDb(env.DB, (sql) => /\bapi_keys\b/.test(sql)) });
    let failures = 0;
    for (const e of endpoints()) {
      const a = await send(b, e.method, e.path, keyFor(e.path, keys), e.body);
      expectClean(a, `${e.method} ${e.path}`, [keys.client, keys.admin]);
      if (a.status >= 500) failures++;
    }
    expect(failures).toBeGreaterThan(5);
  });

  it("an R2 binding that throws: every route answers cleanly", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const keys = { client: await newKey("client"), admin: await newKey("admin") };
    const b = bindings({ ADAPTERS: faultyBucket() });
    for (const e of endpoints()) {
      expectClean(await send(b, e.method, e.path, keyFor(e.path, keys), e.body), `${e.method} ${e.path}`, [
        keys.client,
        keys.admin,
      ]);
    }
  });

  for (const [kind, fetcher] of Object.entries(GARBAGE)) {
    it(`backends answering ${kind}: every route answers cleanly`, async () => {
      vi.spyOn(console, "error").mockImplementation(() => {});
      const keys = { client: await newKey("client"), admin: await newKey("admin") };
      // A host of its own, so that no catalog or health cache from another case answers for it.
      const host = `http://garbage-${Object.keys(GARBAGE).indexOf(kind)}-${Date.now()}.test`;
      const real = globalThis.fetch;
      const seen: string[] = [];
      vi.stubGlobal("fetch", (input: RequestInfo | URL, init?: RequestInit) => {
        const url = new Request(input, init).url;
        if (!url.startsWith(host)) return real(input, init);
        seen.push(url);
        return fetcher(input, init);
      });
      // A lens job row pointing at this backend, so that the job routes reach it too.
      await env.DB.prepare("DELETE FROM lens_jobs WHERE id = ?1").bind("job-abc123-0000aaaa").run();
      const cols = (await env.DB.prepare("PRAGMA table_info(lens_jobs)").all<{ name: string; notnull: number }>())
        .results;
      const values: Record<string, unknown> = {
        id: "job-abc123-0000aaaa",
        backend_url: host,
        model: "lens-test-echo",
        kind: "train",
        created_at: 0,
        created_by: "key_x",
        adapter_id: null,
      };
      const used = cols.filter((c) => c.name in values || c.notnull);
      await env.DB.prepare(
        `INSERT INTO lens_jobs (${used.map((c) => c.name).join(", ")}) VALUES (${used.map((_, i) => `?${i + 1}`).join(", ")})`,
      )
        .bind(...used.map((c) => (c.name in values ? values[c.name] : 0)))
        .run();
      const b = bindings({ BACKEND_URLS: host });
      for (const e of endpoints()) {
        expectClean(await send(b, e.method, e.path, keyFor(e.path, keys), e.body), `${kind}: ${e.method} ${e.path}`, [
          keys.client,
          keys.admin,
        ]);
      }
      // Streaming chat, where a failure after the start is an SSE error event.
      const stream = await send(
        b,
        "POST",
        "/v1/chat/completions",
        keys.client,
        JSON.stringify({
          model: "lens-test-echo",
          stream: true,
          messages: [{ role: "user", content: "Habari yako rafiki" }],
        }),
      );
      if (stream.status >= 400) expectClean(stream, `${kind}: stream`, [keys.client]);
      else
        expect(
          stream.text.includes(LEAKED) || STACK_MARKERS.some((m) => stream.text.includes(m)),
          `${kind}: stream ${stream.text.slice(0, 300)}`,
        ).toBe(false);
      expect(seen.length, "the fake backend was asked").toBeGreaterThan(0);
    });
  }

  it("a wrong backend secret is named, never shown", async () => {
    const client = await newKey("client");
    const wrong = "wrong-backend-secret-77665544";
    const a = await send(
      bindings({ BACKEND_SECRET: wrong }),
      "POST",
      "/v1/chat/completions",
      client,
      JSON.stringify({ model: "lens-test-echo", messages: [{ role: "user", content: "hello" }] }),
    );
    expect(a.status).toBeGreaterThanOrEqual(500);
    expectClean(a, "wrong secret", [client, wrong]);
  });
});
