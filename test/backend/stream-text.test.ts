import { describe, expect, it } from "vitest";
import { ChatTokenizer } from "../../src/gpu-backend/model/chat-tokenizer.js";
import { StopMatcher } from "../../src/gpu-backend/generation/stop-matcher.js";
import { StreamDecoder } from "../../src/gpu-backend/generation/stream-decoder.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

const TEXTS = [
  "The quick brown fox jumps over the lazy dog.",
  "法国的首都是巴黎。",
  "日本語のテキストです",
  "한국어 문장입니다",
  "مرحبا بالعالم",
  "আমি বাংলায় গান গাই",
  "नमस्ते दुनिया",
  "สวัสดีครับ",
  "Привет, мир!",
  "Habari ya asubuhi, rafiki yangu.",
  "¿Dónde está la estación? Ça va très bien. Straße",
  "emoji 👩‍👩‍👧 and 🇰🇪 flags",
];

describe.each(MODEL_CASES)("streaming text with the $name tokenizer", ({ dir, skip }) => {
  it.skipIf(skip !== null)("emits whole characters only, and the pieces add up to the text", () => {
    const tok = ChatTokenizer.fromDir(dir);
    for (const text of TEXTS) {
      const ids = tok.encode(text);
      const decoder = new StreamDecoder((x) => tok.decode(x));
      const pieces = ids.map((id) => decoder.push(id));
      pieces.push(decoder.flush());
      for (const p of pieces) expect(p).not.toContain("\uFFFD");
      expect(pieces.join("")).toBe(tok.decode(ids));
    }
  });
});

describe("stop sequences over streamed text", () => {
  it("holds back a possible stop prefix and cuts before the stop", () => {
    const m = new StopMatcher(["END", "\n\n"]);
    expect(m.push("Hello E")).toEqual({ release: "Hello ", stopped: false });
    expect(m.push("N")).toEqual({ release: "", stopped: false });
    expect(m.push("X more")).toEqual({ release: "ENX more", stopped: false });
    expect(m.push(" and END here")).toEqual({ release: " and ", stopped: true });
  });

  it("releases a held tail when generation ends otherwise", () => {
    const m = new StopMatcher(["STOP"]);
    expect(m.push("abc ST")).toEqual({ release: "abc ", stopped: false });
    expect(m.flush()).toBe("ST");
  });

  it("finds a stop split across pieces and the earliest of several", () => {
    const m = new StopMatcher(["world", "lo w"]);
    // "l" may start "lo w": held back.
    expect(m.push("hel")).toEqual({ release: "he", stopped: false });
    // "lo w" (at 1) comes before "world" (at 3) in "llo wor...".
    expect(m.push("lo wor")).toEqual({ release: "l", stopped: true });
  });
});
