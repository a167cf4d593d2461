import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { detectLanguage } from "../../src/language/detect.js";
import { createKey } from "../../src/gateway/services/api-keys.js";
import type { RequestRecordRow } from "../../src/gateway/services/request-records.js";
import { echoReply } from "../../dev/echo.js";
import { TEST_MODEL, backends, gatewayFetch, postChatTracked } from "./helpers.js";

let key: string;
let keyId: string;
beforeAll(async () => {
  const made = await createKey(env.DB, "client", "records");
  key = made.key;
  keyId = made.record.id;
});

async function rows(id: string): Promise<RequestRecordRow[]> {
  return (await env.DB.prepare("SELECT * FROM requests WHERE id = ?1").bind(id).all<RequestRecordRow>()).results;
}

async function oneRow(id: string): Promise<RequestRecordRow> {
  const found = await rows(id);
  expect(found).toHaveLength(1);
  return found[0]!;
}

const swahili = "Habari yako rafiki, unaweza kunisaidia kuandika barua kwa mwalimu wangu leo?";

describe("request records", () => {
  it("writes one row for a non-streaming request", async () => {
    const { res, settle } = await postChatTracked(key, {
      model: TEST_MODEL,
      messages: [{ role: "user", content: swahili }],
    });
    expect(res.status).toBe(200);
    const id = res.headers.get("x-request-id")!;
    const body = (await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
    await settle();
    const row = await oneRow(id);
    const reply = detectLanguage(echoReply(swahili));
    expect(row).toMatchObject({
      key_id: keyId,
      language: "sw",
      model: TEST_MODEL,
      status: 200,
      finish_reason: "stop",
      stream: 0,
      delta_id: null,
      experiment_id: null,
      arm: null,
      prompt_tokens: body.usage.prompt_tokens,
      completion_tokens: body.usage.completion_tokens,
      reply_language: reply,
      language_match: reply === "und" ? null : reply === "sw" ? 1 : 0,
      feedback_score: null,
    });
    expect(row.total_ms).toBeGreaterThanOrEqual(0);
    expect(row.ttft_ms).not.toBeNull();
    expect(row.ttft_ms!).toBeLessThanOrEqual(row.total_ms);
  });

  it("writes one row for a streaming request when the stream ends", async () => {
    const { res, settle } = await postChatTracked(key, {
      model: TEST_MODEL,
      stream: true,
      messages: [{ role: "user", content: "Where is the nearest train station from here?" }],
    });
    const id = res.headers.get("x-request-id")!;
    await res.text();
    await settle();
    const row = await oneRow(id);
    expect(row).toMatchObject({
      status: 200,
      finish_reason: "stop",
      stream: 1,
      language: "en",
      reply_language: "en",
      language_match: 1,
    });
    expect(row.completion_tokens).toBeGreaterThan(0);
  });

  it("writes one row for an unknown model (404)", async () => {
    const { res, settle } = await postChatTracked(key, {
      model: "no-such-model",
      messages: [{ role: "user", content: "hello there friend" }],
    });
    expect(res.status).toBe(404);
    const id = res.headers.get("x-request-id")!;
    await settle();
    expect(await oneRow(id)).toMatchObject({
      status: 404,
      finish_reason: "error",
      model: "no-such-model",
      ttft_ms: null,
      completion_tokens: null,
    });
  });

  it("writes one row for a malformed body (400)", async () => {
    const { res, settle } = await postChatTracked(key, "{not json");
    expect(res.status).toBe(400);
    await settle();
    expect(await oneRow(res.headers.get("x-request-id")!)).toMatchObject({
      status: 400,
      finish_reason: "error",
      model: "",
    });
  });

  it("writes one error row when the backend dies mid-stream", async () => {
    const { res, settle } = await postChatTracked(
      key,
      { model: TEST_MODEL, stream: true, messages: [{ role: "user", content: "hello routing" }] },
      { BACKEND_URLS: backends["die"] },
    );
    const id = res.headers.get("x-request-id")!;
    expect(await res.text()).toContain('"error"');
    await settle();
    const row = await oneRow(id);
    expect(row).toMatchObject({ status: 200, finish_reason: "error", stream: 1, completion_tokens: null });
    expect(row.ttft_ms).not.toBeNull();
  });

  it("writes one error row with the status sent when a non-streaming backend stalls", async () => {
    const { res, settle } = await postChatTracked(
      key,
      { model: TEST_MODEL, messages: [{ role: "user", content: "hello routing" }] },
      { BACKEND_URLS: backends["stall"], BACKEND_IDLE_TIMEOUT_MS: "300" },
    );
    expect(res.status).toBe(504);
    await settle();
    expect(await oneRow(res.headers.get("x-request-id")!)).toMatchObject({
      status: 504,
      finish_reason: "error",
      stream: 0,
    });
  });

  // A client that goes away mid-stream: the fault matrix (gateway-faults.test.ts, fault 8).
});

describe("POST /v1/feedback", () => {
  const feedback = (k: string, body: unknown) =>
    gatewayFetch()("http://gateway.test/v1/feedback", {
      method: "POST",
      headers: { authorization: `Bearer ${k}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  it("attaches feedback to the key's own request, idempotently, and refuses other keys", async () => {
    const { res, settle } = await postChatTracked(key, {
      model: TEST_MODEL,
      messages: [{ role: "user", content: "Please rate this answer for me" }],
    });
    const id = res.headers.get("x-request-id")!;
    await res.text();
    await settle();

    const first = await feedback(key, { request_id: id, score: 1 });
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ object: "feedback", request_id: id, score: 1 });
    const again = await feedback(key, { request_id: id, score: -0.5 });
    expect(again.status).toBe(200);
    const row = await oneRow(id);
    expect(row.feedback_score).toBe(-0.5);
    expect(row.feedback_at).not.toBeNull();

    const other = (await createKey(env.DB, "client", "other")).key;
    const refused = await feedback(other, { request_id: id, score: 1 });
    expect(refused.status).toBe(404);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("request_not_found");
    expect((await oneRow(id)).feedback_score).toBe(-0.5);

    expect((await feedback(key, { request_id: "nope", score: 1 })).status).toBe(404);
    const bad = await feedback(key, { request_id: id, score: 2 });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
  });
});
