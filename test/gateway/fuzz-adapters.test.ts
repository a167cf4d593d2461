/**
 * Fuzzing adapter uploads (POST /admin/adapters) inside workerd with the real D1 and R2: 1,000
 * generated multipart uploads, mostly malformed variants of one stored valid delta (manifest,
 * safetensors file and multipart framing). Every answer must be an OpenAI-style error with a 4xx
 * (or, for valid variants of the stored file, 200 with the stored row), never a 5xx; and afterwards
 * the adapters rows and the R2 objects are exactly what they were.
 */
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { createKey } from "../../src/gateway/services/api-keys.js";
import { deltaUploadCase, type DeltaBase, type Expect } from "../support/fuzz-mutations.js";
import { makeDelta, type MadeDelta } from "../../dev/make-delta.js";
import { TEST_MODEL, gatewayFetch } from "./helpers.js";

const RUNS = 1000;
/** The model shape the stand-in backends report (dev/stand-in-backend.ts, a Node module). */
const SHAPE = { hidden_size: 8, num_layers: 4 };
const SEED = 42;

let admin: string;
let stored: MadeDelta;
let storedId: string;

/** Everything kept: every adapters row (all columns) and every R2 object (key, size, etag). */
async function snapshot() {
  const rows = await env.DB.prepare("SELECT * FROM adapters ORDER BY id").all();
  const objects = (await env.ADAPTERS.list()).objects
    .map((o) => ({ key: o.key, size: o.size, etag: o.etag }))
    .sort((a, b) => (a.key < b.key ? -1 : 1));
  return { rows: rows.results, objects };
}

beforeAll(async () => {
  admin = (await createKey(env.DB, "admin", "fuzz-adapters")).key;
  stored = makeDelta({
    hiddenSize: SHAPE.hidden_size,
    layers: [2, 3],
    rank: 2,
    language: "fr",
    id: "fr-fuzz-1",
    seed: 99,
  });
  stored.manifest.base_model.id = TEST_MODEL;
  const f = new FormData();
  f.set("manifest", JSON.stringify(stored.manifest));
  f.set("tensors", new File([stored.bytes], "delta.safetensors"));
  const res = await gatewayFetch()("http://gateway.test/admin/adapters", {
    method: "POST",
    headers: { authorization: `Bearer ${admin}` },
    body: f,
  });
  expect(res.status, await res.clone().text()).toBe(201);
  storedId = ((await res.json()) as { id: string }).id;
});

async function check(res: Response, expected: Expect, label: string): Promise<number> {
  const text = await res.text();
  const where = `${label}: ${res.status} ${text.slice(0, 300)}`;
  expect(res.status, where).toBeLessThan(500);
  expect(expected.status, where).toContain(res.status);
  expect(res.headers.get("content-type"), where).toMatch(/^application\/json/);
  expect(res.headers.get("x-request-id"), where).toBeTruthy();
  const body = JSON.parse(text) as Record<string, unknown>;
  if (res.status < 400) {
    // A valid variant of the stored file: the stored row, unchanged.
    expect(body["id"], where).toBe(storedId);
    expect(body["manifest"], where).toEqual(stored.manifest);
    return res.status;
  }
  expect(Object.keys(body), where).toEqual(["error"]);
  const error = body["error"] as Record<string, unknown>;
  expect(Object.keys(error).sort(), where).toEqual(["code", "message", "param", "type"]);
  expect(typeof error["message"], where).toBe("string");
  expect((error["message"] as string).length, where).toBeGreaterThan(10);
  expect(error["type"], where).toBe("invalid_request_error");
  expect(error["param"] === null || typeof error["param"] === "string", where).toBe(true);
  if (expected.codes) expect(expected.codes, where).toContain(error["code"]);
  return res.status;
}

describe("fuzzing POST /admin/adapters", () => {
  it(`answers ${RUNS} generated uploads with a clean 4xx (or the stored row), and stores nothing`, async () => {
    const before = await snapshot();
    expect(before.rows.length).toBeGreaterThanOrEqual(1);
    expect(before.objects.length).toBeGreaterThanOrEqual(2);

    let runs = 0;
    const statuses = new Map<number, number>();
    const labels = new Set<string>();
    const base: DeltaBase = {
      bytes: stored.bytes,
      manifest: stored.manifest as unknown as DeltaBase["manifest"],
      numLayers: SHAPE.num_layers,
    };
    await fc.assert(
      fc.asyncProperty(deltaUploadCase(base, "gateway"), async (c) => {
        runs++;
        labels.add(c.label);
        const headers: Record<string, string> = { authorization: `Bearer ${admin}` };
        if (c.contentType !== undefined) headers["content-type"] = c.contentType;
        const res = await gatewayFetch(c.overrides ?? {})("http://gateway.test/admin/adapters", {
          method: "POST",
          headers,
          body: c.body,
        });
        const status = await check(res, c.expect, c.label);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }),
      { numRuns: RUNS, seed: SEED },
    );
    console.info(
      `adapter upload fuzz: ${runs} cases, ${labels.size} kinds, statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
    );
    expect(runs).toBeGreaterThanOrEqual(RUNS);
    expect(labels.size).toBeGreaterThan(40);
    expect(statuses.get(200) ?? 0).toBeGreaterThan(10);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(500);

    // Nothing lost, nothing half-stored.
    expect(await snapshot()).toEqual(before);
  }, 180_000);
});
