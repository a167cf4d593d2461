/**
 * Fuzzing POST /v1/chat/completions inside workerd: 1,000 generated requests, malformed variants of
 * valid ones (fields dropped or of the wrong type, out-of-range and non-JSON numbers, unknown and
 * unsupported fields, bad messages and content parts, truncated JSON, invalid UTF-8, duplicate keys,
 * deep nesting, oversized bodies, bad headers and keys) mixed with valid ones served by the echo
 * stand-in. Valid requests must get a 200 (JSON or SSE); every other answer must be a 4xx in
 * OpenAI's error shape naming the field where there is one; never a 5xx.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import {
  concatBytes,
  deepJson,
  duplicateKeyJson,
  enc,
  type Expect,
  expectBad,
  invalidUtf8,
  nastyString,
  NUMBER_TOKENS,
  rawFieldJson,
  truncation,
} from "../support/fuzz-mutations.js";
import { env } from "cloudflare:workers";
import { createKey } from "../../src/gateway/services/api-keys.js";
import { TEST_MODEL, newKey, sseData, trackedGatewayFetch, authHeaderFor } from "./helpers.js";

const RUNS = 1000;
const SEED = 42;
const URL_ = "http://gateway.test/v1/chat/completions";

let clientKey: string;
let clientKeyId: string;
let adminKey: string;
beforeAll(async () => {
  const made = await createKey(env.DB, "client", "fuzz-chat");
  clientKey = made.key;
  clientKeyId = made.record.id;
  adminKey = await newKey("admin");
});

interface ChatCase {
  label: string;
  body: string | Uint8Array<ArrayBuffer>;
  expect: Expect & { param?: string | RegExp | null };
  headers?: Record<string, string>;
  /** "client" unless said otherwise. */
  auth?: "client" | "admin" | "none" | "unknown" | "malformed" | "tab";
  contentType?: string | null;
  stream?: boolean;
}

type Req = Record<string, unknown> & { messages: Array<Record<string, unknown>> };

const OK: Expect = { status: [200] };
const KNOWN_FIELDS = [
  "model",
  "messages",
  "stream",
  "stream_options",
  "max_tokens",
  "max_completion_tokens",
  "temperature",
  "top_p",
  "seed",
  "stop",
  "user",
  "n",
  "presence_penalty",
  "frequency_penalty",
  "logprobs",
  "top_logprobs",
  "logit_bias",
  "response_format",
  "modalities",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "functions",
  "function_call",
  "audio",
  "prediction",
  "web_search_options",
  "reasoning_effort",
  "metadata",
  "store",
  "service_tier",
];

/** Values each field must refuse (null is allowed for the optional ones, so it is not here for them). */
const WRONG: Record<string, unknown[]> = {
  model: [42, "", [], {}, true, null],
  messages: ["hi", {}, [], null, 5, [[]], [null], ["hi"]],
  stream: ["yes", 1, [], {}],
  max_tokens: [0, -1, 2.5, "10", 1e21, true, []],
  max_completion_tokens: [0, -5, 0.5, "1", {}],
  temperature: [-0.1, 2.01, "0.7", [], true, 1e300],
  top_p: [-0.1, 1.1, "1", {}],
  seed: [1.5, "1", 1e21, [], {}],
  stop: ["", [""], ["a", "b", "c", "d", "e"], [1], 5, {}, true, [null]],
  user: [123, "x".repeat(513), [], {}],
  n: [2, 0, -1, 1.5, "1"],
  presence_penalty: [0.5, -3, 3, "0"],
  frequency_penalty: [1, "0"],
  logprobs: [true, "false"],
  top_logprobs: [0, 5, null, false],
  logit_bias: [{ "50256": -100 }, [], "x"],
  response_format: [{ type: "json_object" }, { type: "json_schema", json_schema: {} }, "text", {}],
  modalities: [["audio"], ["text", "audio"], "text", [1]],
  tools: [[], [{ type: "function", function: { name: "f" } }], null, false],
  tool_choice: ["auto", "none", null],
  parallel_tool_calls: [true, false, null],
  functions: [[], null],
  function_call: ["auto", null],
  audio: [{ voice: "alloy", format: "mp3" }, null],
  prediction: [{ type: "content", content: "x" }],
  web_search_options: [{}],
  reasoning_effort: ["low", null],
  metadata: [{ a: 1 }, [], "x", { a: null }],
  store: ["true", 1],
  service_tier: [1, [], {}],
};

/** Message-level values each message must refuse, with the param the error names (after `messages[i]`). */
const BAD_MESSAGES: Array<{ message: Record<string, unknown> | unknown; param: RegExp }> = [
  { message: { content: "hi" }, param: /^\.role$/ },
  ...["wizard", "tool", "function", "USER", "", null, 1].map((role) => ({
    message: { role, content: "hi" },
    param: /^\.role$/,
  })),
  { message: { role: "user" }, param: /^\.content$/ },
  { message: { role: "user", content: null }, param: /^\.content$/ },
  { message: { role: "system", content: null }, param: /^\.content$/ },
  ...[12, {}, true].map((content) => ({ message: { role: "user", content }, param: /^\.content$/ })),
  ...[
    [{ type: "image_url", image_url: { url: "http://x/y.png" } }],
    [{ type: "input_image" }],
    [{ type: "text" }],
    [{ type: "text", text: 5 }],
    [{ type: "input_audio", input_audio: { data: "", format: "wav" } }],
    [{ type: "file", file: {} }],
    [{ type: "wizard" }],
    [{}],
    ["hi"],
    [null],
  ].map((content) => ({ message: { role: "user", content }, param: /^\.content(\[0\](\.type|\.text)?)?$/ })),
  { message: { role: "user", content: "hi", mood: "happy" }, param: /^\.mood$/ },
  { message: { role: "assistant", content: null, tool_calls: [] }, param: /^\.tool_calls$/ },
  { message: { role: "assistant", content: "x", function_call: null }, param: /^\.function_call$/ },
  { message: { role: "user", content: "x", tool_call_id: "t" }, param: /^\.tool_call_id$/ },
  { message: { role: "user", content: "x", name: 5 }, param: /^\.name$/ },
  { message: { role: "user", content: "x", name: "n".repeat(257) }, param: /^\.name$/ },
  { message: { role: "assistant", content: "x", refusal: 5 }, param: /^\.refusal$/ },
  { message: "user: hi", param: /^$/ },
  { message: null, param: /^$/ },
  { message: [{ role: "user", content: "hi" }], param: /^$/ },
];

const plainText = fc.string({ unit: "grapheme", minLength: 1, maxLength: 40 });
const content = fc.oneof(
  { weight: 3, arbitrary: plainText },
  { weight: 1, arbitrary: nastyString(40) },
  {
    weight: 1,
    arbitrary: fc.array(
      plainText.map((text) => ({ type: "text", text })),
      { minLength: 1, maxLength: 3 },
    ),
  },
);

/** A valid request, with the optional fields it may carry at their valid values. */
const validRequest: fc.Arbitrary<Req> = fc
  .record(
    {
      before: fc.array(
        fc.oneof(
          fc.record({ role: fc.constantFrom("system", "developer", "user", "assistant"), content }),
          fc.record({
            role: fc.constant("assistant"),
            content: fc.constant(null),
            refusal: fc.option(plainText, { nil: null }),
          }),
          fc.record({ role: fc.constant("user"), content, name: fc.string({ maxLength: 20 }) }),
        ),
        { maxLength: 3 },
      ),
      last: content,
      stream: fc.constantFrom(true, false, null),
      include_usage: fc.option(fc.boolean(), { nil: undefined }),
      max_tokens: fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined }),
      max_completion_tokens: fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined }),
      temperature: fc.option(fc.oneof(fc.double({ min: 0, max: 2, noNaN: true }), fc.constant(null)), {
        nil: undefined,
      }),
      top_p: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
      seed: fc.option(fc.oneof(fc.integer(), fc.constantFrom(Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER)), {
        nil: undefined,
      }),
      stop: fc.option(fc.oneof(plainText, fc.array(plainText, { maxLength: 4 })), { nil: undefined }),
      user: fc.option(fc.string({ maxLength: 512 }), { nil: undefined }),
      neutral: fc.subarray<[string, unknown]>([
        ["n", 1],
        ["presence_penalty", 0],
        ["frequency_penalty", 0],
        ["logprobs", false],
        ["logit_bias", {}],
        ["response_format", { type: "text" }],
        ["modalities", ["text"]],
        ["store", true],
        ["service_tier", "auto"],
        ["metadata", { k: "v" }],
      ]),
    },
    { requiredKeys: ["before", "last", "stream", "neutral"] },
  )
  .map((v) => {
    const r: Req = { model: TEST_MODEL, messages: [...v.before, { role: "user", content: v.last }] };
    if (v.stream !== null) r["stream"] = v.stream;
    if (v.stream === true && v.include_usage !== undefined) r["stream_options"] = { include_usage: v.include_usage };
    for (const k of ["max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "user"] as const)
      if (v[k] !== undefined) r[k] = v[k];
    for (const [k, value] of v.neutral) r[k] = value;
    return r;
  });

function chatCases(): fc.Arbitrary<ChatCase> {
  const ok = (
    label: string,
    r: Req,
    body: string | Uint8Array<ArrayBuffer> = JSON.stringify(r),
    extra: Partial<ChatCase> = {},
  ): ChatCase => ({
    label,
    body,
    expect: OK,
    stream: r["stream"] === true,
    ...extra,
  });
  const bad = (
    label: string,
    body: unknown,
    param?: string | RegExp | null,
    expect: Expect = expectBad(400),
    extra: Partial<ChatCase> = {},
  ): ChatCase => ({
    label,
    body:
      typeof body === "string" || body instanceof Uint8Array
        ? (body as string | Uint8Array<ArrayBuffer>)
        : JSON.stringify(body),
    expect: { ...expect, ...(param !== undefined ? { param } : {}) },
    ...extra,
  });
  const invalidJson = expectBad(400, "invalid_json");
  const isValidNumber = (k: string, v: number | undefined) =>
    v !== undefined &&
    (k === "max_tokens"
      ? Number.isSafeInteger(v) && v > 0
      : k === "temperature"
        ? v >= 0 && v <= 2
        : k === "top_p"
          ? v >= 0 && v <= 1
          : Number.isSafeInteger(v));

  return fc.oneof(
    // Valid requests.
    { weight: 8, arbitrary: validRequest.map((r) => ok("valid", r)) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          validRequest,
          fc.constantFrom<Record<string, string>>(
            { "x-lens-language": "sw" },
            { "x-lens-language": "sw-KE" },
            { "x-lens-language": " EN " },
            { "x-lens-language": "und" },
            { "x-lens-language": "" },
            { "x-lens-mode": "off" },
            { "x-lens-mode": " ON " },
            { "x-lens-mode": "" },
            { "x-request-id": "my-id.1:2" },
            { "x-request-id": "not a valid id!" },
            { "x-request-id": "x".repeat(129) },
            { "x-request-id": "a\tb" },
          ),
        )
        .map(([r, headers]) => ok("valid with headers", r, JSON.stringify(r), { headers })),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(validRequest, fc.integer({ min: 100, max: 20000 })).map(([r, depth]) => {
        // Content parts are loose: an extra key in one is ignored however deep it is.
        const text = JSON.stringify({
          ...r,
          messages: [...r.messages.slice(0, -1), { role: "user", content: [{ type: "text", text: "hello there" }] }],
        });
        return ok(
          "valid: deeply nested extra key in a content part",
          r,
          text.replace('{"type":"text",', `{"type":"text","extra":${deepJson(depth, "object")},`),
        );
      }),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(validRequest, fc.constantFrom("model", "stream", "user"), fc.constantFrom<unknown>(5, "", [], {}))
        .map(([r, k, junk]) =>
          ok(
            "valid: duplicate key, the last valid",
            r,
            duplicateKeyJson({ ...r, user: "u" }, k, junk, k === "user" ? "u" : (r[k] ?? false)),
          ),
        ),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(validRequest, invalidUtf8).map(([r, b]) => {
        // Inside a string: decoded as U+FFFD, still a valid request.
        const text = JSON.stringify({ ...r, user: "before-after" });
        const at = text.indexOf("before-") + "before-".length;
        return ok(
          "valid: invalid UTF-8 inside a string",
          r,
          concatBytes(enc.encode(text.slice(0, at)), b, enc.encode(text.slice(at))),
        );
      }),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          validRequest,
          fc.constantFrom(null, "text/plain", "application/xml", "application/json; charset=utf-16", "text/csv"),
        )
        .map(([r, contentType]) => ({
          ...ok("valid body, odd content-type", r),
          contentType,
          expect: { status: [200, 400, 415] },
        })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(validRequest, fc.integer({ min: 10_000, max: 200_000 }))
        .map(([r, n]) =>
          ok("valid: a long message", { ...r, messages: [{ role: "user", content: "lorem ipsum ".repeat(n / 12) }] }),
        ),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(validRequest, fc.integer({ min: 100, max: 3000 })).map(([r, n]) =>
        ok("valid: many messages", {
          ...r,
          messages: [
            ...Array.from({ length: n }, (_, i) => ({ role: i % 2 ? "assistant" : "user", content: `turn ${i}` })),
            ...r.messages,
          ],
        }),
      ),
    },
    // A UTF-8 byte order mark before the JSON: a decoder may drop it (then the request is valid) or keep it (then it is not JSON).
    {
      weight: 1,
      arbitrary: validRequest.map((r) => ({
        ...ok(
          "a byte order mark before the JSON",
          r,
          concatBytes(Uint8Array.of(0xef, 0xbb, 0xbf), enc.encode(JSON.stringify(r))),
        ),
        expect: { status: [200, 400], codes: ["invalid_json"] },
      })),
    },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom<Req["messages"]>(
          [{ role: "assistant", content: "hi" }],
          [{ role: "system", content: "be brief" }],
          [{ role: "user", content: "" }],
          [{ role: "user", content: [] }],
          [{ role: "developer", content: [{ type: "text", text: "x" }] }],
        )
        .map((messages) => ok("valid: an unusual conversation", { model: TEST_MODEL, messages })),
    },

    // Fields.
    {
      weight: 2,
      arbitrary: fc.tuple(validRequest, fc.constantFrom("model", "messages")).map(([r, k]) => {
        const { [k]: _gone, ...rest } = r;
        return bad(`${k} missing`, rest, k);
      }),
    },
    {
      weight: 8,
      arbitrary: fc
        .tuple(validRequest, fc.constantFrom(...Object.keys(WRONG)))
        .chain(([r, k]) => fc.constantFrom(...WRONG[k]!).map((v) => ({ r, k, v })))
        .map(({ r, k, v }) => {
          const req: Req = { ...r, [k]: v };
          // stream_options needs stream: true to be judged on its own value.
          if (k === "stream_options") req["stream"] = true;
          if (k === "stream") delete req["stream_options"];
          // The field itself, or a place inside it (messages[0], metadata.a).
          return bad(`${k} invalid`, req, new RegExp(`^${k}($|[.[])`));
        }),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(validRequest, fc.constantFrom<unknown>("x", 1, [], { include_usage: "yes" }, { extra: 1 }))
        .map(([r, so]) => bad("stream_options invalid", { ...r, stream: true, stream_options: so }, /^stream_options/)),
    },
    {
      weight: 1,
      arbitrary: validRequest.map((r) =>
        bad(
          "stream_options without stream",
          { ...r, stream: false, stream_options: { include_usage: true } },
          "stream_options",
        ),
      ),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          validRequest,
          fc.oneof(
            fc.constantFrom(
              "temprature",
              "Model",
              "messages ",
              "maxTokens",
              "stream_option",
              "constructor",
              "toString",
              "hasOwnProperty",
            ),
            fc.string({ minLength: 1, maxLength: 16 }),
          ),
          fc.jsonValue({ maxDepth: 3 }),
        )
        .filter(([, k]) => !KNOWN_FIELDS.includes(k) && k !== "__proto__")
        .map(([r, k, v]) => bad("unknown field", { ...r, [k]: v }, k, expectBad(400, "invalid_request_body"))),
    },
    {
      weight: 1,
      arbitrary: validRequest.map((r) =>
        bad("__proto__ field", JSON.stringify(r).replace("{", '{"__proto__":{"stream":true},'), "__proto__"),
      ),
    },
    {
      weight: 3,
      arbitrary: fc
        .tuple(validRequest, fc.constantFrom(...BAD_MESSAGES), fc.nat())
        .map(([r, { message, param }, at]) => {
          const i = at % r.messages.length;
          const messages: unknown[] = [...r.messages];
          messages[i] = message;
          return bad("a bad message", { ...r, messages }, new RegExp(`^messages\\[${i}\\]${param.source.slice(1)}`));
        }),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          validRequest,
          fc.constantFrom("max_tokens", "temperature", "top_p", "seed"),
          fc.constantFrom(...NUMBER_TOKENS),
        )
        .map(([r, k, tok]) => {
          const body = rawFieldJson(r, k, tok.raw);
          if (tok.value === undefined) return bad(`${k} raw ${tok.raw}`, body, null, expectBad(400, "invalid_json"));
          return isValidNumber(k, tok.value) ? ok(`${k} raw ${tok.raw}`, r, body) : bad(`${k} raw ${tok.raw}`, body, k);
        }),
    },

    // JSON text.
    {
      weight: 2,
      arbitrary: validRequest.chain((r) =>
        truncation(JSON.stringify(r)).map((t) => bad("truncated JSON", t, null, invalidJson)),
      ),
    },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom("[]", "null", '"hello"', "42", "true", "[1,2,3]", '[{"model":"x"}]')
        .map((t) => bad("not a JSON object", t, null)),
    },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom("", " ", "\n\t", "{", "{'model':'x'}", '{"model":"x",}', "\u0000", "NaN", '{"model":undefined}')
        .map((t) => bad("not JSON", t, null, invalidJson)),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(validRequest, invalidUtf8)
        .map(([r, b]) =>
          bad("invalid UTF-8 in the syntax", concatBytes(b, enc.encode(JSON.stringify(r).slice(1))), null, invalidJson),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(validRequest, fc.constantFrom("model", "messages", "temperature", "stream"))
        .map(([r, k]) => bad("duplicate key, the last invalid", duplicateKeyJson(r, k, r[k] ?? true, WRONG[k]![0]), k)),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          validRequest,
          fc.constantFrom("messages", "metadata", "tools", "stop", "unknown_deep"),
          fc.integer({ min: 100, max: 50000 }),
          fc.constantFrom<"array" | "object">("array", "object"),
        )
        .map(([r, k, depth, kind]) =>
          bad(`${k} deeply nested`, rawFieldJson(r, k, deepJson(depth, kind)), new RegExp(`^${k}`)),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(validRequest, fc.integer({ min: 1_048_577, max: 1_300_000 }))
        .map(([r, n]) =>
          bad(
            "body over the size limit",
            { ...r, messages: [{ role: "user", content: "x".repeat(n) }] },
            null,
            expectBad(413, "request_too_large"),
          ),
        ),
    },

    // Headers and keys.
    {
      weight: 1,
      arbitrary: fc
        .tuple(validRequest, fc.constantFrom("tlh", "xx", "english", "12", "zz-sw", "x-klingon", "*", "sw\tKE", "e n"))
        .map(([r, lang]) =>
          bad("unsupported x-lens-language", r, "x-lens-language", expectBad(400, "unsupported_language"), {
            headers: { "x-lens-language": lang },
          }),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(validRequest, fc.constantFrom("maybe", "0", "true", "offf", "on,off"))
        .map(([r, mode]) =>
          bad("invalid x-lens-mode", r, "x-lens-mode", expectBad(400), { headers: { "x-lens-mode": mode } }),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(validRequest, fc.constantFrom<ChatCase["auth"]>("none", "unknown", "malformed", "tab"))
        .map(([r, auth]) => bad("no valid key", r, undefined, expectBad(401), { auth })),
    },
    {
      weight: 1,
      arbitrary: validRequest.map((r) =>
        bad("an admin key", r, undefined, expectBad(403, "wrong_key_scope"), { auth: "admin" }),
      ),
    },
  );
}

function authHeader(kind: ChatCase["auth"]): Record<string, string> {
  return authHeaderFor(kind, { client: clientKey, admin: adminKey });
}

describe("fuzzing POST /v1/chat/completions", () => {
  it(`answers ${RUNS} generated requests with a 200 for the valid ones and a clean 4xx for the rest`, async () => {
    let runs = 0;
    const statuses = new Map<number, number>();
    const labels = new Set<string>();
    const { fetch, settle } = trackedGatewayFetch();
    /** Request ids the client key's requests were answered under, when they should leave a record. */
    const recorded = new Set<string>();
    await fc.assert(
      fc.asyncProperty(chatCases(), async (c) => {
        runs++;
        labels.add(c.label);
        const headers: Record<string, string> = { ...authHeader(c.auth), ...c.headers };
        if (c.contentType !== null) headers["content-type"] = c.contentType ?? "application/json";
        const res = await fetch(URL_, { method: "POST", headers, body: c.body });
        // Read everything first: a failing case leaves no stream open.
        const text = await res.text();
        const where = `${c.label}: ${res.status} ${text.slice(0, 300)}`;
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        // Every request past authentication leaves a record, except one refused as too large.
        if ((c.auth ?? "client") === "client" && res.status !== 413)
          recorded.add(res.headers.get("x-request-id") ?? "");
        expect(res.status, where).toBeLessThan(500);
        expect(c.expect.status, where).toContain(res.status);
        expect(res.headers.get("x-request-id"), where).toBeTruthy();
        const callerId = c.headers?.["x-request-id"];
        if (callerId !== undefined && /^[\w.:=-]{1,128}$/.test(callerId))
          expect(res.headers.get("x-request-id"), where).toBe(callerId);

        if (res.status === 200) {
          if (c.stream) {
            expect(res.headers.get("content-type"), where).toMatch(/^text\/event-stream/);
            const events = sseData(text);
            expect(events.at(-1), where).toBe("[DONE]");
            for (const e of events.slice(0, -1)) {
              const chunk = JSON.parse(e) as Record<string, unknown>;
              expect(chunk["error"], where).toBeUndefined();
              expect(chunk["object"], where).toBe("chat.completion.chunk");
            }
          } else {
            expect(res.headers.get("content-type"), where).toMatch(/^application\/json/);
            const body = JSON.parse(text) as {
              object: string;
              choices: Array<{ message: { role: string; content: string }; finish_reason: string }>;
            };
            expect(body.object, where).toBe("chat.completion");
            expect(body.choices[0]?.message.role, where).toBe("assistant");
            expect(typeof body.choices[0]?.message.content, where).toBe("string");
            expect(["stop", "length"], where).toContain(body.choices[0]?.finish_reason);
          }
          return;
        }
        expect(res.headers.get("content-type"), where).toMatch(/^application\/json/);
        const body = JSON.parse(text) as { error: Record<string, unknown> };
        expect(Object.keys(body), where).toEqual(["error"]);
        expect(Object.keys(body.error).sort(), where).toEqual(["code", "message", "param", "type"]);
        expect(typeof body.error["message"], where).toBe("string");
        expect((body.error["message"] as string).length, where).toBeGreaterThan(10);
        expect(["invalid_request_error", "authentication_error", "permission_error"], where).toContain(
          body.error["type"],
        );
        expect(body.error["code"] === null || typeof body.error["code"] === "string", where).toBe(true);
        if (c.expect.codes) expect(c.expect.codes, where).toContain(body.error["code"]);
        const param = c.expect.param;
        if (typeof param === "string" || param === null) expect(body.error["param"], where).toBe(param);
        else if (param instanceof RegExp) expect(String(body.error["param"]), where).toMatch(param);
      }),
      { numRuns: RUNS, seed: SEED },
    );
    console.info(
      `chat fuzz: ${runs} cases, ${labels.size} kinds, statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
    );
    expect(runs).toBeGreaterThanOrEqual(RUNS);
    expect(statuses.get(200) ?? 0).toBeGreaterThan(100);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(400);

    // Nothing lost: one request record per answered request (a reused x-request-id keeps one row).
    await settle();
    const rows = await env.DB.prepare("SELECT id FROM requests WHERE key_id = ?1")
      .bind(clientKeyId)
      .all<{ id: string }>();
    expect(new Set(rows.results.map((r) => r.id))).toEqual(recorded);
    expect(rows.results.length).toBe(recorded.size);
  }, 180_000);
});
