/**
 * A client that hangs up ends its answer even when nobody reads the response body again: the
 * backend's generation is cancelled and the answer is reported finished as "disconnected", so the
 * request's after-work (its record, the waitUntil that keeps it) ends too.
 */
import { describe, expect, it } from "vitest";
import type { AnswerSummary } from "../../src/gateway/answer.js";
import type { OpenGeneration } from "../../src/gateway/services/backends/client.js";
import { FrameReader } from "../../src/gateway/services/backends/frames.js";
import { collectCompletion, streamCompletion } from "../../src/gateway/openai/responses.js";

/** A generation whose backend has started and then sends nothing; records whether it was cancelled. */
function silentGeneration(): { gen: OpenGeneration; cancelled: () => boolean } {
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    cancel() {
      cancelled = true;
    },
  });
  const gen: OpenGeneration = {
    backend: "http://backend.test",
    start: { type: "start", model: "m", prompt_tokens: 3 },
    frames: new FrameReader(body.getReader(), 60_000),
  };
  return { gen, cancelled: () => cancelled };
}

const meta = { id: "chatcmpl-x", created: 0, model: "m", includeUsage: false };

describe("a client that hangs up", () => {
  it("streaming: finishes the answer as disconnected and cancels the backend, though the body is never read", async () => {
    const { gen, cancelled } = silentGeneration();
    const gone = new AbortController();
    const finished: AnswerSummary[] = [];
    streamCompletion(gen.frames, meta, (s) => finished.push(s), { clientGone: gone.signal });
    await new Promise((r) => setTimeout(r, 10));
    expect(finished).toEqual([]);
    gone.abort();
    await new Promise((r) => setTimeout(r, 10));
    expect(finished.map((s) => s.finishReason)).toEqual(["disconnected"]);
    expect(cancelled()).toBe(true);
  });

  it("streaming: a client already gone when the answer starts is finished at once", async () => {
    const { gen, cancelled } = silentGeneration();
    const finished: AnswerSummary[] = [];
    streamCompletion(gen.frames, meta, (s) => finished.push(s), { clientGone: AbortSignal.abort() });
    await new Promise((r) => setTimeout(r, 10));
    expect(finished.map((s) => s.finishReason)).toEqual(["disconnected"]);
    expect(cancelled()).toBe(true);
  });

  it("not streaming: the wait for the backend ends, reported as disconnected, not as a backend error", async () => {
    const { gen, cancelled } = silentGeneration();
    const gone = new AbortController();
    const finished: AnswerSummary[] = [];
    const answer = collectCompletion(gen.frames, meta, (s) => finished.push(s), gone.signal).catch((e: unknown) => e);
    gone.abort();
    await answer;
    expect(finished.map((s) => s.finishReason)).toEqual(["disconnected"]);
    expect(cancelled()).toBe(true);
  });

  it("an answer that ends normally is finished once, and a later hang-up changes nothing", async () => {
    const lines = [
      '{"type":"text","text":"hi"}',
      '{"type":"end","finish_reason":"stop","usage":{"prompt_tokens":3,"completion_tokens":1}}',
    ];
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(`${lines.join("\n")}\n`));
        c.close();
      },
    });
    const gen: OpenGeneration = {
      backend: "b",
      start: { type: "start", model: "m", prompt_tokens: 3 },
      frames: new FrameReader(body.getReader(), 60_000),
    };
    const gone = new AbortController();
    const finished: AnswerSummary[] = [];
    const text = await new Response(
      streamCompletion(gen.frames, meta, (s) => finished.push(s), { clientGone: gone.signal }),
    ).text();
    gone.abort();
    expect(text).toContain("[DONE]");
    expect(finished.map((s) => s.finishReason)).toEqual(["stop"]);
  });

  it("a body nobody reads never holds the request open, and is taken as gone once its reader is idle too long", async () => {
    const { gen, cancelled } = silentGeneration();
    const held: Promise<void>[] = [];
    const finished: AnswerSummary[] = [];
    streamCompletion(gen.frames, meta, (s) => finished.push(s), { keepOpen: (p) => held.push(p), readerIdleMs: 30 });
    await new Promise((r) => setTimeout(r, 80));
    expect(held).toEqual([]);
    expect(finished.map((s) => s.finishReason)).toEqual(["disconnected"]);
    expect(cancelled()).toBe(true);
  });

  it("a client that reads holds the request open until the answer ends, then lets it go", async () => {
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('{"type":"text","text":"hi"}\n'));
      },
    });
    const gen: OpenGeneration = {
      backend: "b",
      start: { type: "start", model: "m", prompt_tokens: 3 },
      frames: new FrameReader(body.getReader(), 60_000),
    };
    const held: Promise<void>[] = [];
    const finished: AnswerSummary[] = [];
    const reader = streamCompletion(gen.frames, meta, (s) => finished.push(s), {
      keepOpen: (p) => held.push(p),
      readerIdleMs: 60_000,
    }).getReader();
    await reader.read(); // the role chunk
    await reader.read(); // "hi": the reader is active
    expect(held).toHaveLength(1);
    let released = false;
    void held[0]!.then(() => (released = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(released).toBe(false);
    await reader.cancel();
    await held[0];
    expect(released).toBe(true);
    expect(finished.map((s) => s.finishReason)).toEqual(["disconnected"]);
  });
});
