/**
 * No request waits on another request's work. These run through SELF, so each request has its own
 * request context in workerd, as in production: a request that ends (or whose client hangs up)
 * takes its own I/O with it, and nothing another request awaits may depend on that I/O.
 * Cache lifetimes are crossed by moving the clock the worker reads (same isolate, same Date).
 */
import { SELF } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { createKey } from "../../src/gateway/services/api-keys.js";
import { makeDelta } from "../../dev/make-delta.js";
import { TEST_MODEL, backends, newKey, until } from "./helpers.js";

const backend = backends["self"]!;
let client: string;
let admin: string;

/** How far the clock has been moved on (only ever forward, across tests: the caches are shared). */
let shift = 0;
const realNow = Date.now.bind(Date);

beforeAll(async () => {
  client = await newKey("client");
  admin = (await createKey(env.DB, "admin", "wedge-test")).key;
});

beforeEach(async () => {
  vi.spyOn(Date, "now").mockImplementation(() => realNow() + shift);
  await fetch(`${backend}/__reset`, { method: "POST" });
});

afterEach(() => {
  vi.restoreAllMocks();
});

const later = (ms: number) => {
  shift += ms;
};

async function holdBack(delays: { models?: number; health?: number; deltas?: number }): Promise<void> {
  await fetch(`${backend}/__delay`, { method: "POST", body: JSON.stringify(delays) });
}

async function calls(): Promise<{ models: number; health: number; deltas: number }> {
  return (await fetch(`${backend}/__calls`)).json();
}

const models = () => SELF.fetch("http://gateway.test/v1/models", { headers: { authorization: `Bearer ${client}` } });

function chat(init: { signal?: AbortSignal; headers?: Record<string, string> } = {}) {
  return SELF.fetch("http://gateway.test/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${client}`, "content-type": "application/json", ...init.headers },
    body: JSON.stringify({ model: TEST_MODEL, messages: [{ role: "user", content: "Habari ya leo rafiki yangu" }] }),
    ...(init.signal ? { signal: init.signal } : {}),
  });
}

function uploadForm(id: string, seed: number, language: "es" | "sw" = "es"): FormData {
  const d = makeDelta({ hiddenSize: 8, layers: [2, 3], rank: 2, language, id, seed });
  d.manifest.base_model.id = TEST_MODEL;
  const f = new FormData();
  f.set("manifest", JSON.stringify(d.manifest));
  f.set("tensors", new File([d.bytes], "delta.safetensors"));
  return f;
}

const upload = (id: string, seed: number, language: "es" | "sw" = "es") =>
  SELF.fetch("http://gateway.test/admin/adapters", {
    method: "POST",
    headers: { authorization: `Bearer ${admin}` },
    body: uploadForm(id, seed, language),
  });

describe("the backends' model catalog", () => {
  it("a refresh started by a request that ended does not hold later requests, before or after the stale time", async () => {
    const first = await models();
    expect(first.status).toBe(200);
    await first.text();
    // Stale but usable; the backend now answers its model list late.
    later(15_000);
    await holdBack({ models: 1_500 });
    const a = await upload("wedge-catalog-a", 1);
    expect(a.status).toBe(201);
    await a.text();
    // B, before the stale time: the stale copy answers at once.
    const b = await models();
    expect(b.status).toBe(200);
    await b.text();
    // C, past the stale time: no usable copy; C must fetch one itself.
    later(60_000);
    const before = (await calls()).models;
    const c = await models();
    expect(c.status).toBe(200);
    expect(((await c.json()) as { data: { id: string }[] }).data.map((m) => m.id)).toEqual([TEST_MODEL]);
    // C asked the backend itself.
    expect((await calls()).models).toBe(before + 1);
  });

  it("a chat whose client hangs up while the catalog refreshes does not hold later requests", async () => {
    await (await models()).text();
    const base = (await calls()).models;
    later(15_000);
    await holdBack({ models: 1_500 });
    // A: its stale catalog starts a refresh, then its client goes away.
    const gone = new AbortController();
    const a = chat({ signal: gone.signal });
    await until(async () => ((await calls()).models > base ? true : undefined));
    gone.abort();
    await a.then((r) => r.body?.cancel()).catch(() => {});
    later(60_000);
    const b = await chat();
    expect(b.status).toBe(200);
    expect(await b.text()).toContain("You said");
    const c = await models();
    expect(c.status).toBe(200);
    await c.text();
  });

  it("a refresh that never comes back is started again once its timeout has passed", async () => {
    await (await models()).text();
    later(15_000);
    const base = (await calls()).models;
    // The backend holds its list far longer than the refresh's own timeout (5 s).
    await holdBack({ models: 8_000 });
    const b = await models();
    expect(b.status).toBe(200);
    await b.text();
    const afterB = await until(async () => ((await calls()).models > base ? (await calls()).models : undefined));
    // Within the refresh's timeout: no second refresh.
    later(1_000);
    await (await models()).text();
    expect((await calls()).models).toBe(afterB);
    // Past it: the next request starts over instead of trusting the lost one.
    later(5_000);
    await holdBack({});
    await (await models()).text();
    await until(async () => ((await calls()).models > afterB ? true : undefined));
  });
});

describe("deltas sent to a backend that lacks them", () => {
  it("a request that goes away mid-upload does not hold another request missing the same delta", async () => {
    const made = await upload("wedge-sync-sw", 7, "sw");
    expect(made.status).toBe(201);
    const adapter = (await made.json()) as { id: string; delta_id: string };
    const activated = await SELF.fetch("http://gateway.test/admin/languages/sw", {
      method: "PUT",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify({ adapter: adapter.id, scale: 1 }),
    });
    expect(activated.status).toBe(200);
    await activated.text();
    // The backend holds no deltas (strict), and takes its time to accept one.
    await holdBack({ deltas: 1_500 });
    const base = (await calls()).deltas;
    const gone = new AbortController();
    const a = chat({ signal: gone.signal, headers: { "x-lens-language": "sw" } });
    await until(async () => ((await calls()).deltas > base ? true : undefined));
    // B misses the same delta while A's upload is under way; then A's client hangs up.
    const b = chat({ headers: { "x-lens-language": "sw" } });
    await new Promise((r) => setTimeout(r, 100));
    gone.abort();
    await a.then((r) => r.body?.cancel()).catch(() => {});
    const answered = await b;
    expect(answered.status).toBe(200);
    expect(answered.headers.get("x-lens-delta")).toBe(adapter.delta_id);
    expect(await answered.text()).toContain("You said");
  });
});
