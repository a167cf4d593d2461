import { describe, expect, it, beforeAll } from "vitest";
import { Deadline } from "../../src/gateway/deadline.js";
import type { GatewayConfig } from "../../src/gateway/env.js";
import { GatewayError } from "../../src/gateway/errors.js";
import { preferenceOrder } from "../../src/gateway/services/backends/affinity.js";
import { openGeneration } from "../../src/gateway/services/backends/client.js";
import { LANGUAGES } from "../../src/protocol/languages.js";
import { backendAuthorization } from "../../src/protocol/backend.js";
import { TEST_BACKEND_SECRET, echoReply } from "../../dev/echo.js";
import { TEST_MODEL, backendLog, backends, newKey, openai, postChat, sseData } from "./helpers.js";

let key: string;
beforeAll(async () => {
  key = await newKey("client");
});

const hello = { model: TEST_MODEL, messages: [{ role: "user", content: "hello routing" }] };

async function servedBy(requestId: string, names: string[]): Promise<string[]> {
  const hits: string[] = [];
  for (const name of names) if ((await backendLog(name)).some((r) => r.request_id === requestId)) hits.push(name);
  return hits;
}

describe("language affinity", () => {
  it("sends every request of a language to the same backend, and spreads languages over backends", async () => {
    const names = ["echo", "echoB", "echoC"];
    const urls = names.map((n) => backends[n]).join(",");
    const chosen = new Map<string, string>();
    for (const lang of LANGUAGES) {
      const seen = new Set<string>();
      for (let i = 0; i < 3; i++) {
        const res = await postChat(key, hello, { BACKEND_URLS: urls }, { "x-lens-language": lang });
        expect(res.status).toBe(200);
        await res.text();
        const hits = await servedBy(res.headers.get("x-request-id")!, names);
        expect(hits).toHaveLength(1);
        seen.add(hits[0]!);
      }
      expect(seen.size, `language ${lang} moved between backends`).toBe(1);
      chosen.set(lang, [...seen][0]!);
    }
    // Rendezvous hashing over 3 backends and 13 languages uses more than one backend.
    expect(new Set(chosen.values()).size).toBeGreaterThan(1);
    // And the backend chosen is the first in the language's preference order.
    for (const [lang, name] of chosen) {
      expect(
        preferenceOrder(
          names.map((n) => backends[n]!),
          lang,
        )[0],
      ).toBe(backends[name]);
    }
  });

  it("routes a model only to the backends that serve it", async () => {
    const urls = ["echo", "echoB", "echoC"].map((n) => backends[n]).join(",");
    const res = await postChat(key, { ...hello, model: "lens-test-other" }, { BACKEND_URLS: urls });
    expect(res.status).toBe(200);
    await res.text();
    expect(await servedBy(res.headers.get("x-request-id")!, ["echo", "echoB", "echoC"])).toEqual(["echoC"]);
  });
});

describe("models", () => {
  it("lists the union of what the backends serve", async () => {
    const urls = ["echo", "echoC"].map((n) => backends[n]).join(",");
    const list = await openai(key, { BACKEND_URLS: urls }).models.list();
    expect(list.data.map((m) => m.id).sort()).toEqual(["lens-test-echo", "lens-test-other"]);
    expect(list.data.every((m) => m.object === "model")).toBe(true);
  });

  it("answers 503 when no backend is reachable or none is configured", async () => {
    const none = await postChat(key, hello, { BACKEND_URLS: backends["refused"] });
    expect(none.status).toBe(503);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe("backend_unavailable");
    const empty = await postChat(key, hello, { BACKEND_URLS: "" });
    expect(empty.status).toBe(503);
    const models = await gatewayModels({ BACKEND_URLS: backends["refused"]! });
    expect(models.status).toBe(503);
  });
});

async function gatewayModels(overrides: Record<string, string>) {
  const { gatewayFetch } = await import("./helpers.js");
  return gatewayFetch(overrides)("http://gateway.test/v1/models", { headers: { authorization: `Bearer ${key}` } });
}

const config = (over: Partial<GatewayConfig> = {}): GatewayConfig => ({
  backendUrls: [],
  backendHeaders: { authorization: backendAuthorization(TEST_BACKEND_SECRET) },
  defaultRequestsPerMinute: null,
  defaultTokensPerMinute: null,
  backendTimeoutMs: 2_000,
  backendIdleTimeoutMs: 2_000,
  maxBodyBytes: 1_000_000,
  maxAdapterBytes: 1_000_000,
  ...over,
});
const generateRequest = (id: string) => ({
  request_id: id,
  model: TEST_MODEL,
  messages: [{ role: "user" as const, content: "fail over please" }],
  sampling: { temperature: 1, top_p: 1, stop: [] },
  language: "en",
  delta: null,
});

describe("failover", () => {
  it("tries the next backend once when the first refuses the connection", async () => {
    const gen = await openGeneration(
      config(),
      generateRequest("failover-1"),
      [backends["refused"]!, backends["echoB"]!],
      Deadline.after(30_000),
    );
    expect(gen.backend).toBe(backends["echoB"]);
    gen.frames.cancel();
    expect(await servedBy("failover-1", ["echoB"])).toEqual(["echoB"]);
  });

  it("tries only once more: a third backend is not reached", async () => {
    const err = await openGeneration(
      config(),
      generateRequest("failover-2"),
      [backends["refused"]!, backends["refused"]!, backends["echoB"]!],
      Deadline.after(30_000),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).status).toBe(503);
    expect(await servedBy("failover-2", ["echoB"])).toEqual([]);
  });

  it("moves on from an overloaded backend and passes retry-after on when all are", async () => {
    const gen = await openGeneration(
      config(),
      generateRequest("failover-3"),
      [backends["overloaded"]!, backends["echo"]!],
      Deadline.after(30_000),
    );
    expect(gen.backend).toBe(backends["echo"]);
    gen.frames.cancel();
    const res = await postChat(key, hello, { BACKEND_URLS: backends["overloaded"] });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("7");
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("backend_overloaded");
  });

  it("skips a backend that just refused, for the next requests", async () => {
    const urls = `${backends["refused"]},${backends["echoB"]}`;
    // Find a language whose first choice is the dead backend.
    const lang = LANGUAGES.find(
      (l) => preferenceOrder([backends["refused"]!, backends["echoB"]!], l, () => false)[0] === backends["refused"],
    );
    expect(lang).toBeDefined();
    const res = await postChat(key, hello, { BACKEND_URLS: urls }, { "x-lens-language": lang! });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ choices: [{ message: { content: echoReply("hello routing") } }] });
    // The catalog probe already marked it down, so live backends come first now.
    expect(preferenceOrder([backends["refused"]!, backends["echoB"]!], lang!)[0]).toBe(backends["echoB"]);
  });
});

describe("a backend that fails", () => {
  it("answers 504 when a backend sends no headers in time", async () => {
    const res = await postChat(key, hello, { BACKEND_URLS: backends["hang"], BACKEND_TIMEOUT_MS: "300" });
    expect(res.status).toBe(504);
    expect(((await res.json()) as { error: { code: string; type: string } }).error).toMatchObject({
      code: "backend_timeout",
      type: "server_error",
    });
  });

  const streamCases = [
    { behaviour: "stall", code: "backend_timeout", message: /stopped sending/ },
    { behaviour: "die", code: "backend_error", message: /connection to the backend was lost/ },
    { behaviour: "malformed", code: "backend_error", message: /broke the protocol/ },
    { behaviour: "error-frame", code: "backend_error", message: /the model crashed/ },
  ];

  it.each(streamCases)(
    "$behaviour mid-stream: one error event, then the stream closes",
    async ({ behaviour, code, message }) => {
      const res = await postChat(
        key,
        { ...hello, stream: true },
        { BACKEND_URLS: backends[behaviour], BACKEND_IDLE_TIMEOUT_MS: "300" },
      );
      expect(res.status).toBe(200);
      const events = sseData(await res.text());
      const last = JSON.parse(events.at(-1)!);
      expect(last.error.code).toBe(code);
      expect(last.error.message).toMatch(message);
      expect(events).not.toContain("[DONE]");
      expect(events.filter((e) => e.includes('"error"'))).toHaveLength(1);
      // What came before the error was ordinary content.
      const content = events
        .slice(0, -1)
        .map((e) => JSON.parse(e).choices[0].delta.content ?? "")
        .join("");
      expect(content).toBe("You said:");
    },
  );

  it.each(streamCases)("$behaviour without streaming: a clean 5xx error", async ({ behaviour, code }) => {
    const res = await postChat(key, hello, { BACKEND_URLS: backends[behaviour], BACKEND_IDLE_TIMEOUT_MS: "300" });
    expect(res.status).toBe(code === "backend_timeout" ? 504 : 502);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  it("surfaces a mid-stream failure as an error from the official client", async () => {
    const stream = await openai(key, { BACKEND_URLS: backends["die"] }).chat.completions.create({
      ...hello,
      stream: true,
    } as never);
    const err = await (async () => {
      for await (const _ of stream as unknown as AsyncIterable<unknown>) {
        // drain
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(String((err as Error).message)).toMatch(/connection to the backend was lost/);
  });
});
