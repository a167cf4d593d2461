import { TEST_BACKEND_SECRET } from "../../dev/echo.js";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { TEST_MODEL, backendLog, newKey, postChat } from "./helpers.js";

let key: string;
beforeAll(async () => {
  key = await newKey("client");
  const now = Math.floor(Date.now() / 1000);
  await env.DB.prepare(
    "INSERT INTO language_deltas (language, delta_id, scale, updated_at) VALUES ('sw', 'sw-lens-1', 0.5, ?1), ('fr', 'missing-fr-2', 1, ?1)",
  )
    .bind(now)
    .run();
});

async function chat(content: string, headers: Record<string, string> = {}) {
  const res = await postChat(key, { model: TEST_MODEL, messages: [{ role: "user", content }] }, {}, headers);
  expect(res.status).toBe(200);
  await res.text();
  const id = res.headers.get("x-request-id")!;
  return { res, sent: (await backendLog("echo")).filter((r) => r.request_id === id) };
}

describe("a language's active delta", () => {
  it("is carried to the backend with its scale and named in x-lens-delta", async () => {
    const { res, sent } = await chat("Habari za asubuhi, naomba msaada wako leo.");
    expect(res.headers.get("x-lens-language")).toBe("sw");
    expect(res.headers.get("x-lens-delta")).toBe("sw-lens-1");
    expect(sent.map((r) => r.delta)).toEqual(["sw-lens-1"]);
  });

  it("is left off with x-lens-mode: off", async () => {
    const { res, sent } = await chat("Habari za asubuhi, naomba msaada wako leo.", { "x-lens-mode": "off" });
    expect(res.headers.get("x-lens-delta")).toBe("none");
    expect(sent.map((r) => r.delta)).toEqual([null]);
  });

  it("is not applied to a language without one", async () => {
    const { res, sent } = await chat("Could you please help me write a short letter?");
    expect(res.headers.get("x-lens-language")).toBe("en");
    expect(res.headers.get("x-lens-delta")).toBe("none");
    expect(sent.map((r) => r.delta)).toEqual([null]);
  });

  it("never fails a request: a backend without the delta serves the base model, and the header says so", async () => {
    const { res, sent } = await chat("Bonjour, pouvez-vous m'aider à écrire une lettre ?");
    expect(res.headers.get("x-lens-language")).toBe("fr");
    expect(res.headers.get("x-lens-delta")).toBe("none");
    expect(sent.map((r) => r.delta)).toEqual(["missing-fr-2", null]);
  });
});

describe("when the delta registry cannot be read", () => {
  it("serves the base model instead of failing", async () => {
    // Verify the key once against the real D1, so that auth is served from the isolate's cache.
    const warm = await postChat(key, {
      model: TEST_MODEL,
      messages: [{ role: "user", content: "hello there friend" }],
    });
    expect(warm.status).toBe(200);
    const brokenDb = {
      prepare() {
        throw new Error("D1 is unavailable");
      },
    } as unknown as D1Database;
    const { default: worker } = await import("../../src/gateway/index.js");
    const { backends } = await import("./helpers.js");
    const { createExecutionContext } = await import("cloudflare:test");
    const res = await worker.fetch(
      new Request("http://gateway.test/v1/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "x-lens-language": "de" },
        body: JSON.stringify({
          model: TEST_MODEL,
          messages: [{ role: "user", content: "Guten Morgen, wie geht es dir heute?" }],
        }),
      }),
      { ...env, DB: brokenDb, BACKEND_URLS: backends["echo"], BACKEND_SECRET: TEST_BACKEND_SECRET },
      createExecutionContext(),
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("x-lens-delta")).toBe("none");
  });
});
