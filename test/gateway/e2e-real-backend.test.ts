/**
 * End to end: the official openai client -> the gateway in workerd -> the real backend (Node,
 * onnxruntime-node) -> the embedded model. Skipped, with the reason, when the model is absent.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { backends, newKey, openai, postChat, sseData } from "./helpers.js";

const real = backends["real"];
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

  it("answers non-streaming, greedy and reproducible", async () => {
    const client = openai(key, { BACKEND_URLS: real });
    const ask = () =>
      client.chat.completions
        .create({ model: MODEL, temperature: 0, max_tokens: 24, messages: [{ role: "user", content: "What is the capital of France?" }] })
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
    const stream = await client.chat.completions.create({ model: MODEL, temperature: 0, max_tokens: 32, messages, stream: true, stream_options: { include_usage: true } });
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
    const res = await postChat(key, { model: MODEL, stream: true, max_tokens: 8, messages: [{ role: "user", content: "¿Cuál es la capital de Francia?" }] }, { BACKEND_URLS: real });
    expect(res.headers.get("x-lens-language")).toBe("es");
    const events = sseData(await res.text());
    expect(events.at(-1)).toBe("[DONE]");
  });

  it("maps a prompt over the model's context to a 400", async () => {
    const res = await postChat(key, { model: MODEL, messages: [{ role: "user", content: "a".repeat(4000) }] }, { BACKEND_URLS: real });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/context/);
  });
});
