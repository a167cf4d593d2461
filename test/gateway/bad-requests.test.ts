/**
 * A corpus of bad requests: each must get the right 4xx in OpenAI's error shape, naming the field
 * where there is one, and never a 5xx.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { TEST_MODEL, gatewayFetch, newKey, authHeaderFor } from "./helpers.js";

interface Case {
  name: string;
  /** Request body (string = sent as is) or a full request description. */
  body?: unknown;
  headers?: Record<string, string>;
  auth?: "client" | "admin" | "none" | "unknown" | "malformed";
  method?: string;
  path?: string;
  status: number;
  param?: string | null;
  code?: string;
  message?: RegExp;
}

const ok = { model: TEST_MODEL, messages: [{ role: "user", content: "hello there" }] };
const withField = (extra: Record<string, unknown>) => ({ ...ok, ...extra });
const withMessage = (message: unknown) => ({ model: TEST_MODEL, messages: [message] });

const CASES: Case[] = [
  {
    name: "malformed JSON",
    body: '{"model": "x", "messages": [',
    status: 400,
    code: "invalid_json",
    message: /parse the JSON/,
  },
  { name: "empty body", body: "", status: 400, code: "invalid_json" },
  { name: "JSON array instead of object", body: "[1,2,3]", status: 400, message: /expected object/i },
  { name: "JSON string instead of object", body: '"hello"', status: 400 },
  {
    name: "missing model",
    body: { messages: ok.messages },
    status: 400,
    param: "model",
    message: /Missing required parameter: 'model'/,
  },
  { name: "model of wrong type", body: withField({ model: 42 }), status: 400, param: "model" },
  { name: "empty model", body: withField({ model: "" }), status: 400, param: "model" },
  { name: "missing messages", body: { model: TEST_MODEL }, status: 400, param: "messages" },
  { name: "messages not an array", body: withField({ messages: "hi" }), status: 400, param: "messages" },
  { name: "empty messages", body: withField({ messages: [] }), status: 400, param: "messages" },
  { name: "message without role", body: withMessage({ content: "hi" }), status: 400, param: "messages[0].role" },
  {
    name: "unknown role",
    body: withMessage({ role: "wizard", content: "hi" }),
    status: 400,
    param: "messages[0].role",
  },
  {
    name: "tool role",
    body: withMessage({ role: "tool", content: "hi", tool_call_id: "x" }),
    status: 400,
    param: "messages[0].role",
    message: /not supported/,
  },
  {
    name: "user message without content",
    body: withMessage({ role: "user" }),
    status: 400,
    param: "messages[0].content",
  },
  {
    name: "content of wrong type",
    body: withMessage({ role: "user", content: 12 }),
    status: 400,
    param: "messages[0].content",
  },
  {
    name: "image content part",
    body: withMessage({ role: "user", content: [{ type: "image_url", image_url: { url: "http://x/y.png" } }] }),
    status: 400,
    param: "messages[0].content[0].type",
    message: /image inputs are not supported/,
  },
  {
    name: "audio content part",
    body: withMessage({ role: "user", content: [{ type: "input_audio", input_audio: { data: "", format: "wav" } }] }),
    status: 400,
    param: "messages[0].content[0].type",
    message: /audio/,
  },
  {
    name: "text part without text",
    body: withMessage({ role: "user", content: [{ type: "text" }] }),
    status: 400,
    param: "messages[0].content[0].text",
  },
  {
    name: "unknown field in a message",
    body: withMessage({ role: "user", content: "hi", mood: "happy" }),
    status: 400,
    param: "messages[0].mood",
  },
  {
    name: "assistant tool_calls",
    body: {
      model: TEST_MODEL,
      messages: [
        { role: "user", content: "hi" },
        { role: "assistant", content: null, tool_calls: [] },
      ],
    },
    status: 400,
    param: "messages[1].tool_calls",
  },
  { name: "n > 1", body: withField({ n: 2 }), status: 400, param: "n", message: /n > 1 is not supported/ },
  {
    name: "tools",
    body: withField({ tools: [{ type: "function", function: { name: "f" } }] }),
    status: 400,
    param: "tools",
    message: /not supported/,
  },
  { name: "tool_choice", body: withField({ tool_choice: "auto" }), status: 400, param: "tool_choice" },
  { name: "functions (legacy)", body: withField({ functions: [] }), status: 400, param: "functions" },
  { name: "audio output", body: withField({ audio: { voice: "alloy", format: "mp3" } }), status: 400, param: "audio" },
  { name: "audio modality", body: withField({ modalities: ["text", "audio"] }), status: 400, param: "modalities" },
  {
    name: "json_schema response_format",
    body: withField({ response_format: { type: "json_schema", json_schema: {} } }),
    status: 400,
    param: "response_format",
  },
  { name: "logprobs", body: withField({ logprobs: true }), status: 400, param: "logprobs" },
  {
    name: "non-zero presence_penalty",
    body: withField({ presence_penalty: 0.5 }),
    status: 400,
    param: "presence_penalty",
  },
  { name: "logit_bias", body: withField({ logit_bias: { "50256": -100 } }), status: 400, param: "logit_bias" },
  {
    name: "unknown top-level field",
    body: withField({ temprature: 0.5 }),
    status: 400,
    param: "temprature",
    message: /Unrecognized request argument supplied: temprature/,
  },
  { name: "temperature too high", body: withField({ temperature: 3 }), status: 400, param: "temperature" },
  { name: "temperature as string", body: withField({ temperature: "0.7" }), status: 400, param: "temperature" },
  { name: "negative top_p", body: withField({ top_p: -0.1 }), status: 400, param: "top_p" },
  { name: "zero max_tokens", body: withField({ max_tokens: 0 }), status: 400, param: "max_tokens" },
  {
    name: "fractional max_completion_tokens",
    body: withField({ max_completion_tokens: 2.5 }),
    status: 400,
    param: "max_completion_tokens",
  },
  { name: "seed not an integer", body: withField({ seed: 1.5 }), status: 400, param: "seed" },
  { name: "five stop sequences", body: withField({ stop: ["a", "b", "c", "d", "e"] }), status: 400, param: "stop" },
  { name: "empty stop string", body: withField({ stop: "" }), status: 400, param: "stop" },
  { name: "stream not a boolean", body: withField({ stream: "yes" }), status: 400, param: "stream" },
  {
    name: "stream_options without stream",
    body: withField({ stream_options: { include_usage: true } }),
    status: 400,
    param: "stream_options",
  },
  { name: "user not a string", body: withField({ user: 123 }), status: 400, param: "user" },
  {
    name: "unknown model",
    body: withField({ model: "gpt-17-ultra" }),
    status: 404,
    param: "model",
    code: "model_not_found",
  },
  {
    name: "unsupported x-lens-language",
    body: ok,
    headers: { "x-lens-language": "tlh" },
    status: 400,
    param: "x-lens-language",
    code: "unsupported_language",
  },
  { name: "invalid x-lens-mode", body: ok, headers: { "x-lens-mode": "maybe" }, status: 400, param: "x-lens-mode" },
  {
    name: "body over the size limit",
    body: withMessage({ role: "user", content: "x".repeat(1_100_000) }),
    status: 413,
    code: "request_too_large",
  },
  { name: "no API key", body: ok, auth: "none", status: 401, code: "missing_api_key" },
  { name: "unknown API key", body: ok, auth: "unknown", status: 401, code: "invalid_api_key" },
  { name: "malformed Authorization header", body: ok, auth: "malformed", status: 401, code: "missing_api_key" },
  { name: "admin key on /v1", body: ok, auth: "admin", status: 403, code: "wrong_key_scope" },
  { name: "unknown route", method: "GET", path: "/v1/engines", status: 404, code: "unknown_url" },
  { name: "wrong method on chat", method: "GET", path: "/v1/chat/completions", status: 404 },
];

let clientKey: string;
let adminKey: string;
beforeAll(async () => {
  clientKey = await newKey("client");
  adminKey = await newKey("admin");
});

function authHeader(kind: Case["auth"]): Record<string, string> {
  return authHeaderFor(kind, { client: clientKey, admin: adminKey });
}

describe("bad requests", () => {
  it("has at least 30 kinds", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(30);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });

  it.each(CASES)("$name -> $status", async (c) => {
    const method = c.method ?? "POST";
    const res = await gatewayFetch()(`http://gateway.test${c.path ?? "/v1/chat/completions"}`, {
      method,
      headers: { "content-type": "application/json", ...authHeader(c.auth), ...c.headers },
      ...(method === "POST" ? { body: typeof c.body === "string" ? c.body : JSON.stringify(c.body) } : {}),
    });
    const text = await res.text();
    expect(res.status, text).toBe(c.status);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(res.headers.get("x-request-id")).toBeTruthy();
    const body = JSON.parse(text) as { error: Record<string, unknown> };
    expect(Object.keys(body)).toEqual(["error"]);
    expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
    expect(typeof body.error["message"]).toBe("string");
    expect((body.error["message"] as string).length).toBeGreaterThan(10);
    expect(body.error["type"]).toMatch(/^(invalid_request_error|permission_error)$/);
    if (c.param !== undefined) expect(body.error["param"]).toBe(c.param);
    if (c.code !== undefined) expect(body.error["code"]).toBe(c.code);
    if (c.message) expect(body.error["message"]).toMatch(c.message);
  });

  it("does not echo a secret from the request in its error", async () => {
    const secret = "lens-SECRET-abc123xyz";
    const res = await gatewayFetch()("http://gateway.test/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${secret}` },
      body: JSON.stringify(ok),
    });
    expect(res.status).toBe(401);
    expect(await res.text()).not.toContain("SECRET");
  });
});
