import { beforeAll, describe, expect, it } from "vitest";
import { echoReply, echoTokens } from "../../dev/echo.js";
import { TEST_MODEL, backendLog, backends, newKey, openai, postChat, sseData, until } from "./helpers.js";

let key: string;
beforeAll(async () => {
  key = await newKey("client");
});

describe("chat completions through the openai client", () => {
  it("answers a non-streaming request in OpenAI's shape", async () => {
    const client = openai(key);
    const { data, response } = await client.chat.completions
      .create({ model: TEST_MODEL, messages: [{ role: "user", content: "What is the capital of France?" }] })
      .withResponse();
    expect(data.object).toBe("chat.completion");
    expect(data.model).toBe(TEST_MODEL);
    expect(data.choices).toHaveLength(1);
    expect(data.choices[0]?.message.role).toBe("assistant");
    expect(data.choices[0]?.message.content).toBe(echoReply("What is the capital of France?"));
    expect(data.choices[0]?.finish_reason).toBe("stop");
    expect(data.usage?.completion_tokens).toBe(echoTokens(echoReply("What is the capital of France?")).length);
    expect(data.usage?.total_tokens).toBe((data.usage?.prompt_tokens ?? 0) + (data.usage?.completion_tokens ?? 0));
    expect(response.headers.get("x-lens-language")).toBe("en");
    expect(response.headers.get("x-lens-delta")).toBe("none");
    const requestId = response.headers.get("x-request-id");
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(data.id).toBe(`chatcmpl-${requestId}`);
  });

  it("streams with the official client and reassembles the same text", async () => {
    const client = openai(key);
    const stream = await client.chat.completions.create({
      model: TEST_MODEL,
      messages: [{ role: "user", content: "Tell me about the rain in Spain" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let finish: string | null = null;
    let usage: unknown = null;
    for await (const chunk of stream) {
      for (const choice of chunk.choices) {
        text += choice.delta.content ?? "";
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(echoReply("Tell me about the rain in Spain"));
    expect(finish).toBe("stop");
    expect(usage).toMatchObject({ completion_tokens: echoTokens(text).length });
  });

  it("honours max_tokens and max_completion_tokens with finish_reason length", async () => {
    const client = openai(key);
    const a = await client.chat.completions.create({
      model: TEST_MODEL,
      max_tokens: 3,
      messages: [{ role: "user", content: "one two three four five" }],
    });
    expect(a.choices[0]?.message.content).toBe("You said: one");
    expect(a.choices[0]?.finish_reason).toBe("length");
    const b = await client.chat.completions.create({
      model: TEST_MODEL,
      max_completion_tokens: 4,
      messages: [{ role: "user", content: "one two three four five" }],
    });
    expect(b.choices[0]?.message.content).toBe("You said: one two");
    expect(b.usage?.completion_tokens).toBe(4);
  });

  it("passes stop sequences (string or array) and sampling settings to the backend", async () => {
    const client = openai(key);
    const res = await client.chat.completions.create({
      model: TEST_MODEL,
      messages: [{ role: "user", content: "alpha beta gamma delta" }],
      stop: ["gamma"],
      temperature: 0,
      seed: 7,
    });
    expect(res.choices[0]?.message.content).toBe("You said: alpha beta ");
    expect(res.choices[0]?.finish_reason).toBe("stop");
    const one = await client.chat.completions.create({
      model: TEST_MODEL,
      messages: [{ role: "user", content: "x y z" }],
      stop: "y",
    });
    expect(one.choices[0]?.message.content).toBe("You said: x ");
    const log = await backendLog("echo");
    expect(log.some((r) => r.stop.length === 1 && r.stop[0] === "y")).toBe(true);
  });

  it("takes content as an array of text parts and ignores the system prompt for detection", async () => {
    const res = await postChat(key, {
      model: TEST_MODEL,
      messages: [
        { role: "system", content: "You are a helpful assistant. Always be polite and answer clearly." },
        {
          role: "user",
          content: [
            { type: "text", text: "Habari za asubuhi, " },
            { type: "text", text: "naomba unisaidie kupika wali leo." },
          ],
        },
      ],
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: Array<{ message: { content: string } }> };
    expect(body.choices[0]?.message.content).toBe(echoReply("Habari za asubuhi, naomba unisaidie kupika wali leo."));
    expect(res.headers.get("x-lens-language")).toBe("sw");
  });
});

describe("the SSE stream, byte for byte", () => {
  async function rawStream(body: Record<string, unknown>) {
    const res = await postChat(key, { model: TEST_MODEL, stream: true, ...body });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const raw = await res.text();
    return { res, raw, events: sseData(raw) };
  }

  it("sends role chunk, content chunks, finish chunk, [DONE], and no usage unless asked", async () => {
    const { raw, events } = await rawStream({ messages: [{ role: "user", content: "a b c" }] });
    expect(raw.endsWith("data: [DONE]\n\n")).toBe(true);
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks[0].choices[0].delta).toEqual({ role: "assistant", content: "" });
    for (const c of chunks) {
      expect(c.object).toBe("chat.completion.chunk");
      expect(c.choices).toHaveLength(1);
      expect("usage" in c).toBe(false);
    }
    const content = chunks
      .slice(1, -1)
      .map((c) => c.choices[0].delta.content)
      .join("");
    expect(content).toBe(echoReply("a b c"));
    const last = chunks.at(-1);
    expect(last.choices[0].finish_reason).toBe("stop");
    expect(last.choices[0].delta).toEqual({});
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
  });

  it("adds the usage chunk with empty choices only when include_usage is set", async () => {
    const { events } = await rawStream({
      messages: [{ role: "user", content: "a b c" }],
      stream_options: { include_usage: true },
    });
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    const usage = chunks.at(-1);
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toEqual({ prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 });
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
    expect(chunks.at(-2).choices[0].finish_reason).toBe("stop");
  });

  it("stops the backend's generation when the client goes away mid-stream", async () => {
    const words = Array.from({ length: 60 }, (_, i) => `w${i}`).join(" ");
    const res = await postChat(
      key,
      { model: TEST_MODEL, stream: true, messages: [{ role: "user", content: words }] },
      { BACKEND_URLS: backends["slow"] },
    );
    const requestId = res.headers.get("x-request-id");
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    await reader.cancel();
    const entry = await until(async () =>
      (await backendLog("slow")).find((r) => r.request_id === requestId && r.outcome !== "open"),
    );
    expect(entry.outcome).toBe("aborted");
  });
});

describe("language controls", () => {
  it("detects the language of the last user message", async () => {
    const res = await postChat(key, {
      model: TEST_MODEL,
      messages: [{ role: "user", content: "¿Dónde está la estación de tren más cercana?" }],
    });
    expect(res.headers.get("x-lens-language")).toBe("es");
    const id = res.headers.get("x-request-id");
    await res.text();
    expect((await backendLog("echo")).find((r) => r.request_id === id)?.language).toBe("es");
  });

  it("answers und for text too short to call, and uses earlier user turns when the last is short", async () => {
    const short = await postChat(key, { model: TEST_MODEL, messages: [{ role: "user", content: "ok" }] });
    expect(short.headers.get("x-lens-language")).toBe("und");
    const convo = await postChat(key, {
      model: TEST_MODEL,
      messages: [
        { role: "user", content: "Wie kann ich meine Steuererklärung online einreichen?" },
        { role: "assistant", content: "Sie können ELSTER verwenden." },
        { role: "user", content: "ok" },
      ],
    });
    expect(convo.headers.get("x-lens-language")).toBe("de");
  });

  it("lets x-lens-language override detection, region subtags included", async () => {
    const res = await postChat(
      key,
      { model: TEST_MODEL, messages: [{ role: "user", content: "Hello there, how are you today?" }] },
      {},
      { "x-lens-language": "sw-KE" },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("x-lens-language")).toBe("sw");
  });

  it("accepts x-lens-mode: off and serves without a delta", async () => {
    const res = await postChat(
      key,
      {
        model: TEST_MODEL,
        messages: [{ role: "user", content: "Bonjour, pouvez-vous m'aider à écrire une lettre ?" }],
      },
      {},
      { "x-lens-mode": "off" },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("x-lens-delta")).toBe("none");
    expect(res.headers.get("x-lens-language")).toBe("fr");
    const id = res.headers.get("x-request-id");
    await res.text();
    expect((await backendLog("echo")).find((r) => r.request_id === id)?.delta).toBeNull();
  });

  it("keeps a caller's plain x-request-id and replaces a malformed one", async () => {
    const kept = await postChat(
      key,
      { model: TEST_MODEL, messages: [{ role: "user", content: "hello world again" }] },
      {},
      { "x-request-id": "trace-123.abc" },
    );
    expect(kept.headers.get("x-request-id")).toBe("trace-123.abc");
    const replaced = await postChat(
      key,
      { model: TEST_MODEL, messages: [{ role: "user", content: "hello world again" }] },
      {},
      { "x-request-id": "bad id with spaces" },
    );
    expect(replaced.headers.get("x-request-id")).not.toBe("bad id with spaces");
  });
});
