/**
 * Fuzzing the backend's internal API in process, on the embedded model: at least 1,000 generated
 * requests each at POST /internal/v1/generate and PUT /internal/v1/deltas/:id, mostly malformed
 * variants of valid ones. Every answer must be a clean `{error: {code, message}}` 4xx (or, for the
 * valid ones mixed in, a 2xx), never a 5xx or a thrown error; and after the delta fuzz the store
 * holds exactly what it held before.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { BackendErrorBody, GENERATE_PATH, GenerateFrame } from "../../src/protocol/backend.js";
import { DELTAS_PATH, DeltaErrorBody } from "../../src/protocol/delta.js";
import { createBackendApp } from "../../src/gpu-backend/app.js";
import { type LoadedModel, loadModel } from "../../src/gpu-backend/load.js";
import {
  concatBytes,
  deepJson,
  deltaUploadCase,
  duplicateKeyJson,
  enc,
  type Expect,
  expectBad,
  invalidUtf8,
  nastyString,
  NUMBER_TOKENS,
  rawFieldJson,
  truncation,
  wrongTypeValues,
} from "../support/fuzz-mutations.js";
import { makeDelta, type MadeDelta } from "../../dev/make-delta.js";
import { checkHistogram, parseExposition, total } from "./helpers-exposition.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

const embedded = MODEL_CASES[0]!;
const SECRET = "fuzz-backend-secret-0123456789";
const AUTH = `Bearer ${SECRET}`;
const RUNS = 1000;
const SEED = 42;
const HELD = "fuzz-held-1";
/** A small file cap, so that uploads past it stay cheap to make. */
const MAX_FILE = 256 * 1024;

let model: LoadedModel;
let app: ReturnType<typeof createBackendApp>;
let held: MadeDelta;

beforeAll(async () => {
  model = await loadModel(embedded.dir, {
    executionProvider: "cpu",
    maxBatch: 4,
    maxQueue: 16,
    maxDeltaFileBytes: MAX_FILE,
  });
  app = createBackendApp(model, { secret: SECRET });
  held = makeDelta({
    hiddenSize: model.info.hiddenSize,
    layers: [model.info.numLayers - 2, model.info.numLayers - 1],
    rank: 2,
    fingerprint: model.fingerprint,
    id: HELD,
    language: "sw",
    seed: 5,
  });
  held.manifest.base_model.id = model.info.id;
  const res = await putDelta(HELD, "multipart/form-data; boundary=x", formBody(held));
  expect(res.status, await res.clone().text()).toBe(201);
}, 60_000);

function formBody(d: MadeDelta): { body: FormData } {
  const f = new FormData();
  f.set("manifest", JSON.stringify(d.manifest));
  f.set("tensors", new File([d.bytes], "delta.safetensors"));
  return { body: f };
}

async function putDelta(
  id: string,
  contentType: string | undefined,
  body: { body: FormData | Uint8Array<ArrayBuffer> },
): Promise<Response> {
  const headers: Record<string, string> = { authorization: AUTH };
  // A FormData body brings its own content-type (with the boundary).
  if (contentType !== undefined && !(body.body instanceof FormData)) headers["content-type"] = contentType;
  return app.request(`${DELTAS_PATH}/${id}`, { method: "PUT", headers, body: body.body });
}

/** Checks one answer against what the case allows; returns the status and, for errors, the body. */
async function check(res: Response, expected: Expect, label: string): Promise<{ status: number; error?: unknown }> {
  const text = await res.text();
  const where = `${label}: ${res.status} ${text.slice(0, 300)}`;
  expect(res.status, where).toBeLessThan(500);
  expect(expected.status, where).toContain(res.status);
  if (res.status < 400) return { status: res.status };
  expect(res.headers.get("content-type"), where).toMatch(/^application\/json/);
  const body = JSON.parse(text) as { error: { code: string; message: string } };
  expect(Object.keys(body), where).toEqual(["error"]);
  expect(Object.keys(body.error).sort(), where).toEqual(["code", "message"]);
  expect(body.error.message.length, where).toBeGreaterThan(0);
  if (expected.codes) expect(expected.codes, where).toContain(body.error.code);
  return { status: res.status, error: body };
}

// ---------------------------------------------------------------------------------------------
// POST /internal/v1/generate

interface GenerateCase {
  label: string;
  body: Uint8Array<ArrayBuffer> | string;
  contentType?: string;
  auth?: string | null;
  expect: Expect;
  /** Valid requests: the most completion tokens the end frame may report. */
  maxTokens?: number;
}

const OK: Expect = { status: [200] };
const invalid = expectBad(400, "invalid_request");

function generateCases(): fc.Arbitrary<GenerateCase> {
  const plainText = fc.string({ unit: "grapheme", minLength: 1, maxLength: 30 });
  const sampling = fc.record(
    {
      max_tokens: fc.integer({ min: 1, max: 2 }),
      temperature: fc.oneof(fc.constantFrom(0, 2, 1e-300, 5e-324), fc.double({ min: 0, max: 2, noNaN: true })),
      top_p: fc.oneof(fc.constantFrom(0, 1, 1e-300), fc.double({ min: 0, max: 1, noNaN: true })),
      seed: fc.oneof(fc.integer(), fc.constantFrom(0, -1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER)),
      stop: fc.array(
        nastyString(6).filter((s) => s.length > 0),
        { maxLength: 4 },
      ),
    },
    { requiredKeys: ["max_tokens"] },
  );
  const valid = fc.record({
    request_id: fc.string({ unit: "binary", minLength: 1, maxLength: 200 }),
    model: fc.constant(model.info.id),
    messages: fc
      .tuple(
        fc.array(
          fc.record({
            role: fc.constantFrom("system", "user", "assistant"),
            content: fc.oneof(plainText, fc.constant("")),
          }),
          { maxLength: 3 },
        ),
        plainText,
      )
      .map(([before, last]) => [...before, { role: "user", content: last }]),
    sampling,
    language: fc.oneof(
      fc.constantFrom("en", "sw", "und", "zh"),
      fc.string({ unit: "binary-ascii", minLength: 2, maxLength: 3 }),
    ),
    delta: fc.oneof(
      fc.constant(null),
      fc.record(
        {
          id: fc.constant(HELD),
          scale: fc.oneof(fc.double({ min: -4, max: 4, noNaN: true }), fc.constantFrom(-4, 0, 4)),
        },
        { requiredKeys: ["id"] },
      ),
    ),
  });

  type Req = Record<string, unknown> & { sampling: { max_tokens: number } };
  const ok = (
    label: string,
    r: Req,
    body: string = JSON.stringify(r),
    extra: Partial<GenerateCase> = {},
  ): GenerateCase => ({
    label,
    body,
    expect: OK,
    maxTokens: r.sampling.max_tokens,
    ...extra,
  });
  const bad = (
    label: string,
    body: unknown,
    expect: Expect = invalid,
    extra: Partial<GenerateCase> = {},
  ): GenerateCase => ({
    label,
    body: typeof body === "string" ? body : JSON.stringify(body),
    expect,
    ...extra,
  });

  const REQUIRED = ["request_id", "model", "messages", "sampling", "language", "delta"];
  const WRONG: Record<string, unknown[]> = {
    request_id: ["", "x".repeat(201), ...wrongTypeValues("string")],
    model: ["", "x".repeat(201), ...wrongTypeValues("string")],
    messages: [
      [],
      "hi",
      {},
      [{}],
      [[]],
      [null],
      [{ role: "tool", content: "x" }],
      [{ role: "developer", content: "x" }],
      [{ role: "user" }],
      [{ role: "user", content: 1 }],
      [{ role: "user", content: ["hi"] }],
      [{ content: "hi" }],
      null,
    ],
    sampling: [null, [], "greedy", 1],
    language: ["", "x", "abcd", "x".repeat(100), ...wrongTypeValues("string")],
    delta: [
      "x",
      1,
      [],
      { scale: 1 },
      { id: "" },
      { id: "x".repeat(201) },
      { id: HELD, scale: 4.5 },
      { id: HELD, scale: -5 },
      { id: HELD, scale: "1" },
      { id: 5 },
    ],
  };
  const SAMPLING_WRONG: Record<string, unknown[]> = {
    max_tokens: [0, -1, 1.5, "2", 1e21, true, [], {}],
    temperature: [-0.1, 2.1, 1e300, -1e300, "0.5", true, []],
    top_p: [-0.5, 1.5, "1", [], {}],
    seed: [1.5, "1", 1e21, -1e21, [], true],
    stop: ["stop", [""], ["a", "b", "c", "d", "e"], [1], [null], {}, 5],
  };

  return fc.oneof(
    // Valid requests, a few tokens each.
    { weight: 5, arbitrary: valid.map((r) => ok("valid", r as Req)) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          valid,
          fc
            .string({ minLength: 1, maxLength: 10 })
            .filter(
              (k) => !["request_id", "model", "messages", "sampling", "language", "delta", "__proto__"].includes(k),
            ),
          fc.jsonValue(),
        )
        .map(([r, k, v]) => ok("valid: unknown field (ignored)", { ...(r as Req), [k]: v })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(valid, fc.integer({ min: 100, max: 20000 }))
        .map(([r, depth]) =>
          ok(
            "valid: deeply nested unknown field",
            r as Req,
            JSON.stringify(r).replace("{", `{"extra":${deepJson(depth, "object")},`),
          ),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(valid, fc.constantFrom("request_id", "language"), fc.constantFrom<unknown>(5, null, "", []))
        .map(([r, k, junk]) =>
          ok("valid: duplicate key, the last valid", r as Req, duplicateKeyJson(r, k, junk, (r as Req)[k])),
        ),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(valid, invalidUtf8).map(([r, b]) => {
        // Inside the request id: decoded as U+FFFD, still a valid request.
        const text = JSON.stringify({ ...r, request_id: "id-here" });
        const at = text.indexOf("id-here") + 3;
        return ok("valid: invalid UTF-8 inside a string", r as Req, "", {
          body: concatBytes(enc.encode(text.slice(0, at)), b, enc.encode(text.slice(at))),
        });
      }),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          valid,
          fc.constantFrom(
            undefined,
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/json; charset=latin1",
          ),
        )
        .map(([r, ct]) => ({
          ...ok("valid body, odd content-type", r as Req),
          ...(ct !== undefined ? { contentType: ct } : { contentType: "" }),
          expect: { status: [200, 400, 415] },
        })),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(valid, fc.array(nastyString(30), { minLength: 1, maxLength: 3 })).map(([r, contents]) => ({
        ...ok("odd text in messages", {
          ...(r as Req),
          messages: contents.map((content) => ({ role: "user", content })),
        }),
        expect: { status: [200, 400], codes: ["invalid_request"] },
      })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          valid,
          fc.constantFrom<Array<{ role: string; content: string }>>(
            [{ role: "system", content: "be brief" }],
            [{ role: "assistant", content: "hi" }],
            [{ role: "user", content: "" }],
            [
              { role: "user", content: "a" },
              { role: "user", content: "b" },
            ],
            [
              { role: "user", content: "hi" },
              { role: "assistant", content: "there" },
            ],
          ),
        )
        .map(([r, messages]) => ({
          ...ok("unusual conversation", { ...(r as Req), messages }),
          expect: { status: [200, 400], codes: ["invalid_request"] },
        })),
    },

    {
      weight: 1,
      arbitrary: valid.map((r) => ({
        ...ok("a byte order mark before the JSON", r as Req, "", {
          body: concatBytes(Uint8Array.of(0xef, 0xbb, 0xbf), enc.encode(JSON.stringify(r))),
        }),
        expect: { status: [200, 400], codes: ["invalid_request"] },
      })),
    },

    // Malformed.
    {
      weight: 3,
      arbitrary: fc.tuple(valid, fc.constantFrom(...REQUIRED)).map(([r, k]) => {
        const { [k]: _gone, ...rest } = r as Req;
        return bad(`${k} missing`, rest);
      }),
    },
    {
      weight: 5,
      arbitrary: fc
        .tuple(valid, fc.constantFrom(...REQUIRED))
        .chain(([r, k]) => fc.constantFrom(...WRONG[k]!).map((v) => bad(`${k} invalid`, { ...(r as Req), [k]: v }))),
    },
    {
      weight: 5,
      arbitrary: fc
        .tuple(valid, fc.constantFrom(...Object.keys(SAMPLING_WRONG)))
        .chain(([r, k]) =>
          fc
            .constantFrom(...SAMPLING_WRONG[k]!)
            .map((v) => bad(`sampling.${k} invalid`, { ...(r as Req), sampling: { ...(r as Req).sampling, [k]: v } })),
        ),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(valid, fc.constantFrom("max_tokens", "temperature", "top_p", "seed"), fc.constantFrom(...NUMBER_TOKENS))
        .map(([r, k, tok]) => {
          const req = r as Req;
          const v = tok.value;
          const validValue =
            v !== undefined &&
            (k === "max_tokens"
              ? Number.isSafeInteger(v) && v > 0 && v <= 2
              : k === "temperature"
                ? v >= 0 && v <= 2
                : k === "top_p"
                  ? v >= 0 && v <= 1
                  : Number.isSafeInteger(v));
          const body = JSON.stringify(req).replace(
            JSON.stringify(req.sampling),
            rawFieldJson(req.sampling, k, tok.raw),
          );
          return validValue
            ? ok(`sampling.${k} raw ${tok.raw}`, req, body, {
                maxTokens: k === "max_tokens" ? v : req.sampling.max_tokens,
              })
            : bad(
                `sampling.${k} raw ${tok.raw}`,
                body,
                k === "max_tokens" && v !== undefined && Number.isSafeInteger(v) && v > 2 ? { status: [400] } : invalid,
              );
        }),
    },
    {
      weight: 1,
      arbitrary: valid.map((r) => bad("another model", { ...r, model: "gpt-x" }, expectBad(404, "model_not_found"))),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(valid, fc.stringMatching(/^[a-z0-9-]{1,20}$/))
        .filter(([, id]) => id !== HELD)
        .map(([r, id]) =>
          bad("a delta not held", { ...r, delta: { id, scale: 1 } }, expectBad(409, "delta_not_loaded")),
        ),
    },
    { weight: 2, arbitrary: valid.chain((r) => truncation(JSON.stringify(r)).map((t) => bad("truncated JSON", t))) },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(
          "",
          " ",
          "null",
          "[]",
          '"x"',
          "42",
          "true",
          "{}",
          "[{}]",
          "\u0000",
          "{'a':1}",
          '{"request_id":NaN}',
        )
        .map((t) => bad("not a request object", t)),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(valid, invalidUtf8).map(([r, b]) => {
        const text = JSON.stringify(r);
        return bad("invalid UTF-8 in the syntax", "", invalid, { body: concatBytes(b, enc.encode(text.slice(1))) });
      }),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          valid,
          fc.constantFrom("messages", "delta"),
          fc.integer({ min: 100, max: 20000 }),
          fc.constantFrom<"array" | "object">("array", "object"),
        )
        .map(([r, k, depth, kind]) => bad(`${k} deeply nested`, rawFieldJson(r, k, deepJson(depth, kind)))),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(valid, fc.integer({ min: 100, max: 20000 }))
        .map(([r, depth]) => bad("sampling deeply nested", rawFieldJson(r, "sampling", deepJson(depth, "array")))),
    },
    // sampling is not strict: an unknown key in it is dropped, however deep.
    {
      weight: 1,
      arbitrary: fc
        .tuple(valid, fc.integer({ min: 100, max: 20000 }))
        .map(([r, depth]) =>
          ok(
            "valid: deeply nested unknown field in sampling",
            r as Req,
            JSON.stringify(r).replace('"sampling":{', `"sampling":{"extra":${deepJson(depth, "object")},`),
          ),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(valid, fc.constantFrom("model", "language", "sampling"))
        .map(([r, k]) =>
          bad(
            "duplicate key, the last invalid",
            duplicateKeyJson(r, k, (r as Req)[k], k === "sampling" ? { temperature: 9 } : 7),
          ),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(valid, fc.integer({ min: 4000, max: 20000 }))
        .map(([r, n]) =>
          bad("a prompt over the context", { ...r, messages: [{ role: "user", content: "x".repeat(n) }] }),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          valid,
          fc.constantFrom(
            null,
            "",
            "Bearer",
            "Bearer wrong-secret-0123456789",
            `Basic ${SECRET}`,
            AUTH.toLowerCase(),
            SECRET,
          ),
        )
        .map(([r, auth]) => bad("bad credentials", r, expectBad(401, "unauthorized"), { auth })),
    },
  );
}

// ---------------------------------------------------------------------------------------------

describe.skipIf(embedded.skip !== null)("fuzzing the backend's internal API", () => {
  it(`POST ${GENERATE_PATH}: ${RUNS} generated requests, each a 2xx stream or a clean 4xx`, async () => {
    let runs = 0;
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(generateCases(), async (c) => {
        runs++;
        const headers: Record<string, string> = {};
        if (c.auth !== null) headers["authorization"] = c.auth ?? AUTH;
        if (c.contentType !== "") headers["content-type"] = c.contentType ?? "application/json";
        const res = await app.request(GENERATE_PATH, { method: "POST", headers, body: c.body });
        if (res.status !== 200) {
          const { status, error } = await check(res, c.expect, c.label);
          expect(BackendErrorBody.safeParse(error).success, c.label).toBe(true);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          return;
        }
        // Read the whole stream before any assertion, so a failing case leaves nothing generating.
        const text = await res.text();
        const where = `${c.label}: 200 ${text.slice(0, 200)}`;
        expect(c.expect.status, where).toContain(200);
        expect(res.headers.get("content-type"), where).toBe("application/x-ndjson");
        const frames = text
          .trim()
          .split("\n")
          .map((l) => GenerateFrame.parse(JSON.parse(l)));
        expect(frames[0]?.type, where).toBe("start");
        const end = frames.at(-1);
        expect(end?.type, `${where} ${JSON.stringify(end)}`).toBe("end");
        if (end?.type === "end" && c.maxTokens !== undefined)
          expect(end.usage.completion_tokens, where).toBeLessThanOrEqual(c.maxTokens);
        expect(
          frames.slice(1, -1).every((f) => f.type === "text"),
          where,
        ).toBe(true);
        statuses.set(200, (statuses.get(200) ?? 0) + 1);
      }),
      { numRuns: RUNS, seed: SEED },
    );
    console.info(`generate fuzz: ${runs} cases, statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    expect(runs).toBeGreaterThanOrEqual(RUNS);
    // Both kinds really ran: valid requests that generated, malformed ones refused.
    expect(statuses.get(200) ?? 0).toBeGreaterThan(50);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(300);
    // The languages the requests named (any 2-3 characters, quotes and newlines included) did not
    // break the metrics: every line is still a comment or `name{label="value",...} number`.
    const metrics = await (await app.request("/metrics", { headers: { authorization: AUTH } })).text();
    const sample =
      /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*")*\})? -?[0-9.e+]+$/;
    for (const line of metrics.trimEnd().split("\n"))
      if (!line.startsWith("#")) expect(line, "a metrics line").toMatch(sample);
    // And the page as a whole still parses: typed families, consistent histograms, and every request
    // the engine accepted ended once (all streams were read to their end above).
    const families = parseExposition(metrics);
    expect(families.get("lens_backend_time_to_first_token_seconds")?.type).toBe("histogram");
    const accepted = total(families, "lens_backend_requests_accepted_total");
    expect(accepted).toBeGreaterThanOrEqual(statuses.get(200) ?? 0);
    // A reply can end before any text (EOS at once), so it has no time to first token.
    expect(checkHistogram(families, "lens_backend_time_to_first_token_seconds").count).toBeLessThanOrEqual(accepted);
    expect(checkHistogram(families, "lens_backend_request_duration_seconds").count).toBe(accepted);
    expect(
      total(families, "lens_backend_requests_total") -
        total(families, "lens_backend_requests_total", { outcome: "rejected_overloaded" }),
    ).toBe(accepted);
    expect(total(families, "lens_backend_requests_by_language_total")).toBe(accepted);
    for (const language of families
      .get("lens_backend_requests_by_language_total")!
      .samples.map((x) => x.labels["language"]!)) {
      expect(language === "other" || language === "und" || /^[a-z]{2,3}$/.test(language), language).toBe(true);
    }
    // Nothing left generating (the engine drops a finished row on its next turn).
    await vi.waitFor(() => expect(model.engine.stats.running + model.engine.stats.queued).toBe(0), { timeout: 5000 });
  }, 120_000);

  it(`PUT ${DELTAS_PATH}/:id: ${RUNS} generated uploads, each a clean 4xx (or 201 for the held file), and the store unchanged`, async () => {
    const snapshot = async () => {
      const res = await app.request(DELTAS_PATH, { headers: { authorization: AUTH } });
      const listing = (await res.json()) as { deltas: Array<Record<string, unknown>>; decoded_bytes: number };
      // last_used_at moves when the valid cases put the same file again; everything else must not.
      return { ...listing, deltas: listing.deltas.map(({ last_used_at: _t, ...rest }) => rest) };
    };
    const before = await snapshot();
    expect(before.deltas.map((d) => (d["manifest"] as { id: string }).id)).toEqual([HELD]);

    let runs = 0;
    const statuses = new Map<number, number>();
    const labels = new Set<string>();
    const base = {
      bytes: held.bytes,
      manifest: held.manifest as unknown as Parameters<typeof deltaUploadCase>[0]["manifest"],
      numLayers: model.info.numLayers,
      maxFileBytes: MAX_FILE,
    };
    await fc.assert(
      fc.asyncProperty(deltaUploadCase(base, "backend"), async (c) => {
        runs++;
        labels.add(c.label);
        const res = await putDelta(c.pathId ?? HELD, c.contentType, { body: c.body });
        const { status, error } = await check(res, c.expect, c.label);
        if (status >= 400) expect(DeltaErrorBody.safeParse(error).success, c.label).toBe(true);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }),
      { numRuns: RUNS, seed: SEED },
    );
    console.info(
      `delta fuzz: ${runs} cases, ${labels.size} kinds, statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
    );
    expect(runs).toBeGreaterThanOrEqual(RUNS);
    expect(labels.size).toBeGreaterThan(40);
    expect(statuses.get(201) ?? 0).toBeGreaterThan(10);

    // Nothing lost, nothing half-stored: the same delta, the same values.
    expect(await snapshot()).toEqual(before);
    const kept = model.deltas.get(HELD)!;
    expect(kept.manifest).toEqual(held.manifest);
    for (const [l, layer] of held.layers) {
      const k = kept.layers.get(l)!;
      expect([k.A, k.B, k.b]).toEqual([layer.A, layer.B, layer.b]);
    }
  }, 120_000);
});
