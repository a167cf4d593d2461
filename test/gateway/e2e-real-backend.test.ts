/**
 * End to end: the official openai client -> the gateway in workerd -> the real backend (Node,
 * onnxruntime-node) -> the embedded model. Skipped, with the reason, when the model is absent.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { forgetActiveDeltas } from "../../src/gateway/services/deltas/active-deltas.js";
import { makeDelta } from "../../dev/make-delta.js";
import { backends, newKey, openai, postChat, sseData } from "./helpers.js";
import { backendAuthorization } from "../../src/protocol/backend.js";
import { TEST_BACKEND_SECRET } from "../../dev/echo.js";

const real = backends["real"];
const BACKEND_AUTH = { authorization: backendAuthorization(TEST_BACKEND_SECRET) };
const MODEL = "lens-tiny-chat";

describe.skipIf(!real)("end to end on the embedded model (skipped: models/lens-tiny-chat absent)", () => {
  let key: string;
  beforeAll(async () => {
    key = await newKey("client");
  });

  it("lists the embedded model", async () => {
    const list = await openai(key, { BACKEND_URLS: real }).models.list();
    expect(list.data.map((m) => m.id)).toEqual([MODEL]);
  });

  for (const [what, secret] of [
    ["a wrong BACKEND_SECRET", "not-the-backends-secret-xyz"],
    ["no BACKEND_SECRET", undefined],
  ] as const) {
    it(`with ${what} the real backend refuses the gateway, and the client gets a 502 naming the setting, never the secret`, async () => {
      const res = await postChat(
        key,
        { model: MODEL, max_tokens: 4, messages: [{ role: "user", content: "hello" }] },
        { BACKEND_URLS: real, BACKEND_SECRET: secret },
      );
      expect(res.status).toBe(502);
      const text = await res.text();
      const body = JSON.parse(text) as { error: { message: string; type: string } };
      expect(body.error.type).toBe("server_error");
      expect(body.error.message).toContain("BACKEND_SECRET");
      expect(text).not.toContain(TEST_BACKEND_SECRET);
      if (secret) expect(text).not.toContain(secret);
    });
  }

  it("answers non-streaming, greedy and reproducible", async () => {
    const client = openai(key, { BACKEND_URLS: real });
    const ask = () =>
      client.chat.completions
        .create({
          model: MODEL,
          temperature: 0,
          max_tokens: 24,
          messages: [{ role: "user", content: "What is the capital of France?" }],
        })
        .withResponse();
    const a = await ask();
    const b = await ask();
    expect(a.data.choices[0]?.message.content?.length).toBeGreaterThan(0);
    expect(a.data.choices[0]?.message.content).toBe(b.data.choices[0]?.message.content);
    expect(a.data.usage?.completion_tokens).toBeGreaterThan(0);
    expect(a.data.usage?.completion_tokens).toBeLessThanOrEqual(24);
    expect(a.response.headers.get("x-lens-language")).toBe("en");
    expect(a.response.headers.get("x-lens-delta")).toBe("none");
  });

  it("streams the same text it returns whole", async () => {
    const client = openai(key, { BACKEND_URLS: real });
    const messages = [{ role: "user" as const, content: "Habari za asubuhi? Unaendeleaje leo?" }];
    const whole = await client.chat.completions.create({ model: MODEL, temperature: 0, max_tokens: 32, messages });
    const stream = await client.chat.completions.create({
      model: MODEL,
      temperature: 0,
      max_tokens: 32,
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: { completion_tokens: number } | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(whole.choices[0]?.message.content);
    expect(usage?.completion_tokens).toBe(whole.usage?.completion_tokens);
  });

  it("ends a raw SSE stream with [DONE] and reports the detected language", async () => {
    const res = await postChat(
      key,
      {
        model: MODEL,
        stream: true,
        max_tokens: 8,
        messages: [{ role: "user", content: "¿Cuál es la capital de Francia?" }],
      },
      { BACKEND_URLS: real },
    );
    expect(res.headers.get("x-lens-language")).toBe("es");
    const events = sseData(await res.text());
    expect(events.at(-1)).toBe("[DONE]");
  });

  it("maps a prompt over the model's context to a 400", async () => {
    const res = await postChat(
      key,
      { model: MODEL, messages: [{ role: "user", content: "a".repeat(4000) }] },
      { BACKEND_URLS: real },
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/context/);
  });
});

describe.skipIf(!real)("end to end with a delta on one language (skipped: models/lens-tiny-chat absent)", () => {
  let key: string;
  const DELTA_ID = "sw-e2e-strong";
  beforeAll(async () => {
    key = await newKey("client");
    const health = (await (await fetch(`${real}/internal/v1/health`, { headers: BACKEND_AUTH })).json()) as {
      fingerprint: string;
      hidden_size: number;
      num_layers: number;
    };
    const layers = Array.from({ length: health.num_layers }, (_, i) => i);
    const made = makeDelta({
      hiddenSize: health.hidden_size,
      layers,
      rank: 8,
      fingerprint: health.fingerprint,
      id: DELTA_ID,
      language: "sw",
      seed: 77,
      scale: 2,
    });
    const form = new FormData();
    form.set("manifest", JSON.stringify(made.manifest));
    form.set("tensors", new Blob([made.bytes]), "delta.safetensors");
    const put = await fetch(`${real}/internal/v1/deltas/${DELTA_ID}`, {
      method: "PUT",
      body: form,
      headers: BACKEND_AUTH,
    });
    expect(put.status).toBe(201);
    await env.DB.prepare("INSERT INTO language_deltas (language, delta_id, scale, updated_at) VALUES ('sw', ?1, 1, 0)")
      .bind(DELTA_ID)
      .run();
    // Earlier tests in this isolate cached "no delta for sw"; a change made here is seen at once.
    forgetActiveDeltas();
  });

  const ask = async (content: string, headers: Record<string, string> = {}) => {
    const res = await postChat(
      key,
      { model: MODEL, temperature: 0, max_tokens: 24, messages: [{ role: "user", content }] },
      { BACKEND_URLS: real },
      headers,
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: Array<{ message: { content: string } }> };
    return {
      text: body.choices[0]!.message.content,
      delta: res.headers.get("x-lens-delta"),
      language: res.headers.get("x-lens-language"),
    };
  };

  it("applies the Swahili delta to Swahili requests: the header names it and the text differs from base", async () => {
    const swahili = "Habari za asubuhi? Naomba unieleze kuhusu mlima Kilimanjaro.";
    const edited = await ask(swahili);
    const base = await ask(swahili, { "x-lens-mode": "off" });
    expect(edited.language).toBe("sw");
    expect(edited.delta).toBe(DELTA_ID);
    expect(base.delta).toBe("none");
    expect(edited.text).not.toBe(base.text);
  });

  it("leaves another language alone", async () => {
    const english = "What is the tallest mountain in Africa?";
    const plain = await ask(english);
    const base = await ask(english, { "x-lens-mode": "off" });
    expect(plain.language).toBe("en");
    expect(plain.delta).toBe("none");
    expect(plain.text).toBe(base.text);
  });

  it("streams with the delta too", async () => {
    const stream = await openai(key, { BACKEND_URLS: real }).chat.completions.create({
      model: MODEL,
      temperature: 0,
      max_tokens: 24,
      stream: true,
      messages: [{ role: "user", content: "Habari za asubuhi? Naomba unieleze kuhusu mlima Kilimanjaro." }],
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe((await ask("Habari za asubuhi? Naomba unieleze kuhusu mlima Kilimanjaro.")).text);
  });
});
