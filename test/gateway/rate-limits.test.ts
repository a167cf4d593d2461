/**
 * Per-key rate limits: requests and tokens per minute, counted by one Durable Object per key
 * (the real one, in workerd), 429 with retry-after and x-ratelimit-* headers, set per key by an
 * admin or by deployment defaults.
 */
import { env } from "cloudflare:workers";
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { SlidingWindow } from "../../src/gateway/services/rate-limit/window.js";
import { KeyWindows } from "../../src/gateway/services/rate-limit/key-windows.js";
import { createKey } from "../../src/gateway/services/api-keys.js";
import type { RequestRecordRow } from "../../src/gateway/services/request-records.js";
import { TEST_MODEL, gatewayFetch, newKey, openai, postChat, postChatTracked } from "./helpers.js";

const chat = {
  model: TEST_MODEL,
  messages: [{ role: "user" as const, content: "Tell me about the mountains of Kenya please." }],
};

type ErrorBody = { error: { message: string; type: string; param: string | null; code: string | null } };

async function keyWith(limits: { rpm?: number | null; tpm?: number | null }) {
  return createKey(env.DB, "client", "limits", {
    requestsPerMinute: limits.rpm ?? null,
    tokensPerMinute: limits.tpm ?? null,
  });
}

describe("sliding window (pure)", () => {
  it("counts the last 60 seconds only and says when the oldest spend ages out", () => {
    const w = new SlidingWindow();
    const t0 = 1_000_000_000;
    w.add(2, t0);
    w.add(3, t0 + 10_000);
    expect(w.used(t0 + 10_500)).toBe(5);
    // Under a limit of 4, the first 2 must leave: at t0 + 60 s, 49.5 s after t0 + 10.5 s -> 50 s.
    expect(w.secondsUntilBelow(4, t0 + 10_500)).toBe(50);
    expect(w.secondsUntilBelow(6, t0 + 10_500)).toBe(0);
    // Under 1, both must leave: the second bucket leaves at t0 + 70 s.
    expect(w.secondsUntilBelow(1, t0 + 10_500)).toBe(60);
    expect(w.used(t0 + 60_000)).toBe(3);
    expect(w.used(t0 + 70_000)).toBe(0);
  });

  it("admits up to the request limit, then refuses until a minute has passed", () => {
    const k = new KeyWindows();
    const limits = { requestsPerMinute: 3, tokensPerMinute: null };
    const t = 5_000_000;
    const got = [0, 1, 2, 3].map((i) => k.admit(limits, t + i * 1000));
    expect(got.map((a) => a.ok)).toEqual([true, true, true, false]);
    expect(got.map((a) => a.remainingRequests)).toEqual([2, 1, 0, 0]);
    const refused = got[3]!;
    expect(refused.ok === false && refused.limit).toBe("requests");
    expect(refused.ok === false && refused.retryAfterS).toBe(57);
    expect(k.admit(limits, t + 60_000).ok).toBe(true);
  });

  it("refuses on tokens once the minute's spend reaches the limit", () => {
    const k = new KeyWindows();
    const limits = { requestsPerMinute: null, tokensPerMinute: 100 };
    expect(k.admit(limits, 0).ok).toBe(true);
    k.spend(99, 0);
    expect(k.admit(limits, 1000)).toMatchObject({ ok: true, remainingTokens: 1 });
    k.spend(5, 1000);
    expect(k.admit(limits, 2000)).toMatchObject({ ok: false, limit: "tokens", remainingTokens: 0, retryAfterS: 58 });
  });
});

describe("per-key rate limits through the gateway", () => {
  it("answers 429 with retry-after past the request limit, with OpenAI's headers and error shape, and records it", async () => {
    const { key, record } = await keyWith({ rpm: 3 });
    const statuses: number[] = [];
    const remaining: Array<string | null> = [];
    for (let i = 0; i < 3; i++) {
      const res = await postChat(key, chat);
      statuses.push(res.status);
      remaining.push(res.headers.get("x-ratelimit-remaining-requests"));
      expect(res.headers.get("x-ratelimit-limit-requests")).toBe("3");
      await res.arrayBuffer();
    }
    expect(statuses).toEqual([200, 200, 200]);
    expect(remaining).toEqual(["2", "1", "0"]);

    const { res, settle } = await postChatTracked(key, chat);
    expect(res.status).toBe(429);
    const retryAfter = Number(res.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(res.headers.get("x-ratelimit-remaining-requests")).toBe("0");
    const body = (await res.json()) as ErrorBody;
    expect(body.error).toMatchObject({ type: "rate_limit_error", code: "rate_limit_exceeded", param: null });
    expect(body.error.message).toContain("3 requests per minute");
    expect(body.error.message).not.toContain(key);
    await settle();
    const rows = await env.DB.prepare("SELECT * FROM requests WHERE id = ?1")
      .bind(res.headers.get("x-request-id"))
      .all<RequestRecordRow>();
    expect(rows.results).toHaveLength(1);
    expect(rows.results[0]).toMatchObject({ key_id: record.id, status: 429, finish_reason: "error" });
  });

  it("keeps each key's count apart", async () => {
    const a = await keyWith({ rpm: 1 });
    const b = await keyWith({ rpm: 1 });
    expect((await postChat(a.key, chat)).status).toBe(200);
    expect((await postChat(a.key, chat)).status).toBe(429);
    expect((await postChat(b.key, chat)).status).toBe(200);
  });

  it("counts prompt and completion tokens once a request finishes, streaming included", async () => {
    const { key } = await keyWith({ tpm: 10 });
    const first = await postChatTracked(key, { ...chat, stream: true, stream_options: { include_usage: true } });
    expect(first.res.status).toBe(200);
    expect(first.res.headers.get("x-ratelimit-limit-tokens")).toBe("10");
    expect(first.res.headers.get("x-ratelimit-remaining-tokens")).toBe("10");
    const text = await first.res.text();
    const usage = JSON.parse(
      text
        .split("\n\n")
        .filter((l) => l.includes('"usage"') && l.includes('"choices":[]'))[0]!
        .slice(6),
    ) as { usage: { total_tokens: number } };
    expect(usage.usage.total_tokens).toBeGreaterThan(10);
    await first.settle();
    const second = await postChat(key, chat);
    expect(second.status).toBe(429);
    expect(((await second.json()) as ErrorBody).error.message).toContain("10 tokens per minute");
    expect(second.headers.get("x-ratelimit-remaining-tokens")).toBe("0");
  });

  it("applies the deployment defaults to keys without their own, and 0 lifts them for one key", async () => {
    const plain = await keyWith({});
    const exempt = await keyWith({ rpm: 0 });
    const own = await keyWith({ rpm: 3 });
    const fetchDefaults = gatewayFetch({ RATE_LIMIT_RPM: "1" });
    const send = (key: string) =>
      fetchDefaults("http://gateway.test/v1/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify(chat),
      }).then(async (r) => {
        await r.arrayBuffer();
        return r.status;
      });
    expect([await send(plain.key), await send(plain.key)]).toEqual([200, 429]);
    expect([await send(exempt.key), await send(exempt.key), await send(exempt.key)]).toEqual([200, 200, 200]);
    expect([await send(own.key), await send(own.key), await send(own.key), await send(own.key)]).toEqual([
      200, 200, 200, 429,
    ]);
  });

  it("leaves keys without any limit alone (no headers)", async () => {
    const key = await newKey("client");
    const res = await postChat(key, chat);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-ratelimit-limit-requests")).toBeNull();
  });

  it("surfaces as the SDK's RateLimitError", async () => {
    const { key } = await keyWith({ rpm: 1 });
    const client = openai(key);
    await client.chat.completions.create({ model: TEST_MODEL, messages: chat.messages });
    const err = await client.chat.completions
      .create({ model: TEST_MODEL, messages: chat.messages })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err as InstanceType<typeof OpenAI.RateLimitError>).headers?.get("retry-after")).toMatch(/^\d+$/);
  });

  it("fails loudly when limits apply but the limiter binding is missing", async () => {
    const { key } = await keyWith({ rpm: 5 });
    const res = await postChat(key, chat, { RATE_LIMITER: undefined } as never);
    expect(res.status).toBe(500);
    expect(((await res.json()) as ErrorBody).error.code).toBe("rate_limiter_missing");
  });

  it("lets requests through, without limit headers, when the limiter cannot be reached", async () => {
    const { key } = await keyWith({ rpm: 1 });
    const broken = {
      idFromName: (name: string) => ({ name }),
      get: () => ({
        admit: () => Promise.reject(new Error("limiter unreachable")),
        spend: () => Promise.reject(new Error("limiter unreachable")),
      }),
    };
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await postChat(key, chat, { RATE_LIMITER: broken } as never);
      statuses.push(res.status);
      expect(res.headers.get("x-ratelimit-limit-requests")).toBeNull();
      await res.arrayBuffer();
    }
    expect(statuses).toEqual([200, 200, 200]);
  });

  it("rejects a bad default in the configuration", async () => {
    const key = await newKey("client");
    const res = await postChat(key, chat, { RATE_LIMIT_TPM: "-5" });
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toContain("    at ");
  });
});

describe("admin: key limits", () => {
  const admin = async (method: string, path: string, adminKey: string, body?: unknown) => {
    const res = await gatewayFetch()(`http://gateway.test${path}`, {
      method,
      headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };

  it("creates a key with limits, changes them with PATCH, and the new limit applies at once", async () => {
    const adminKey = await newKey("admin");
    const made = await admin("POST", "/admin/keys", adminKey, {
      scope: "client",
      name: "limited",
      requests_per_minute: 5,
      tokens_per_minute: 1000,
    });
    expect(made.status).toBe(201);
    expect(made.json).toMatchObject({ requests_per_minute: 5, tokens_per_minute: 1000 });
    const id = made.json["id"] as string;
    const key = made.json["key"] as string;

    expect((await postChat(key, chat)).status).toBe(200);
    const patched = await admin("PATCH", `/admin/keys/${id}`, adminKey, { requests_per_minute: 1 });
    expect(patched.status).toBe(200);
    expect(patched.json).toMatchObject({ id, requests_per_minute: 1, tokens_per_minute: 1000 });
    // One request already counted this minute: the new limit of 1 refuses the next.
    expect((await postChat(key, chat)).status).toBe(429);

    const listed = await admin("GET", "/admin/keys", adminKey);
    const row = (listed.json["data"] as Array<Record<string, unknown>>).find((k) => k["id"] === id);
    expect(row).toMatchObject({ requests_per_minute: 1, tokens_per_minute: 1000 });
    expect(JSON.stringify(listed.json)).not.toContain(key);

    const cleared = await admin("PATCH", `/admin/keys/${id}`, adminKey, {
      requests_per_minute: null,
      tokens_per_minute: 0,
    });
    expect(cleared.json).toMatchObject({ requests_per_minute: null, tokens_per_minute: 0 });
    expect((await postChat(key, chat)).status).toBe(200);
  });

  it("refuses bad limits and unknown keys with OpenAI-style errors", async () => {
    const adminKey = await newKey("admin");
    const { record } = await keyWith({});
    for (const body of [
      { requests_per_minute: -1 },
      { requests_per_minute: 1.5 },
      { tokens_per_minute: "10" },
      { rpm: 5 },
    ]) {
      const res = await admin("PATCH", `/admin/keys/${record.id}`, adminKey, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.json["error"]).toMatchObject({ type: "invalid_request_error" });
    }
    expect((await admin("POST", "/admin/keys", adminKey, { scope: "client", requests_per_minute: -3 })).status).toBe(
      400,
    );
    const missing = await admin("PATCH", "/admin/keys/key_nope", adminKey, { requests_per_minute: 3 });
    expect(missing.status).toBe(404);
    expect(missing.json["error"]).toMatchObject({ code: "key_not_found" });
  });
});
