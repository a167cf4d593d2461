import { describe, expect, it } from "vitest";
import { FrameReader } from "../../src/gateway/services/backends/frames.js";

const reader = (lines: string[], chunkAt = 7) => {
  const bytes = new TextEncoder().encode(lines.join("\n"));
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      // Chunks that split frames (and characters) anywhere, as a network does.
      for (let i = 0; i < bytes.length; i += chunkAt) c.enqueue(bytes.slice(i, i + chunkAt));
      c.close();
    },
  });
  return new FrameReader(body.getReader(), 1000);
};

describe("reading a whole reply at once", () => {
  it("gives the frames the schema gives, text frames checked by hand included", async () => {
    const { frames, firstAt } = await reader([
      '{"type":"text","text":"Bonjour "}',
      '{"type":"text","text":"à vous","extra":1}',
      '{"type":"end","finish_reason":"stop","usage":{"prompt_tokens":3,"completion_tokens":2}}',
      "",
    ]).rest();
    expect(frames).toEqual([
      { type: "text", text: "Bonjour " },
      { type: "text", text: "à vous" },
      { type: "end", finish_reason: "stop", usage: { prompt_tokens: 3, completion_tokens: 2 } },
    ]);
    expect(firstAt).not.toBeNull();
  });

  it("refuses a text frame whose text is not a string, and a line that is not JSON", async () => {
    await expect(reader(['{"type":"text","text":7}']).rest()).rejects.toThrow(/does not match the protocol/);
    await expect(reader(['{"type":"text"']).rest()).rejects.toThrow(/not JSON/);
  });
});
