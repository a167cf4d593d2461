/**
 * Byte-level models never emit text that is not UTF-8: the engine resamples without the tokens that
 * cannot follow (generation/utf8-guard.ts). Checked on the guard itself, on the two tokenizer
 * families it reads, and on the embedded byte-level model sampling Thai, Chinese, Japanese and
 * Korean at a high temperature with replies cut at random lengths.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Utf8Guard, Utf8State, tokenBytesOf } from "../../src/gpu-backend/generation/utf8-guard.js";
import { type LoadedModel, loadModel } from "../../src/gpu-backend/load.js";
import { EMBEDDED_MODEL_DIR, FIXTURE_MODEL_DIR } from "../support/model-fixtures.js";

/** 256 single-byte tokens, one two-byte token (U+0915's first two bytes), one whole character, and an end token. */
const BYTES: (Uint8Array | null)[] = [
  ...Array.from({ length: 256 }, (_, b) => Uint8Array.of(b)),
  Uint8Array.of(0xe0, 0xa4),
  new TextEncoder().encode("क"),
  null,
];
const PAIR = 256;
const WHOLE = 257;
const END = 258;

describe("the UTF-8 guard", () => {
  const guard = Utf8Guard.build(BYTES, new Set([END]))!;

  it("at a character boundary: ASCII, leads and whole characters, but no stray continuation or invalid lead", () => {
    expect(guard).not.toBeNull();
    for (const b of [0x41, 0x0a, 0xc3, 0xe0, 0xf0, 0xf4])
      expect(guard.allows(Utf8State.Free, b), b.toString(16)).toBe(true);
    for (const b of [0x80, 0xbf, 0xc0, 0xc1, 0xf5, 0xff])
      expect(guard.allows(Utf8State.Free, b), b.toString(16)).toBe(false);
    expect(guard.allows(Utf8State.Free, WHOLE)).toBe(true);
    expect(guard.after(Utf8State.Free, WHOLE)).toBe(Utf8State.Free);
    expect(guard.allows(Utf8State.Free, END)).toBe(true);
  });

  it("inside a character: only the continuation bytes that can complete it, and no end", () => {
    const afterE0 = guard.after(Utf8State.Free, 0xe0);
    expect(afterE0).toBe(Utf8State.Need2E0);
    expect(guard.allows(afterE0, 0x9f)).toBe(false); // overlong
    expect(guard.allows(afterE0, 0xa4)).toBe(true);
    expect(guard.allows(afterE0, 0x41)).toBe(false);
    expect(guard.allows(afterE0, END)).toBe(false);
    expect(guard.allows(guard.after(Utf8State.Free, 0xed), 0xa0)).toBe(false); // surrogate
    expect(guard.allows(guard.after(Utf8State.Free, 0xf4), 0x90)).toBe(false); // past U+10FFFF
    // A token of several bytes moves the state by all of them.
    expect(guard.after(Utf8State.Free, PAIR)).toBe(Utf8State.Need1);
    expect(guard.allows(Utf8State.Need1, 0x95)).toBe(true);
    expect(guard.after(Utf8State.Need1, 0x95)).toBe(Utf8State.Free);
  });

  it("masks exactly the tokens that cannot follow", () => {
    const logits = new Float32Array(BYTES.length).fill(1);
    guard.mask(logits, 0, logits.length, Utf8State.Need1);
    const kept = [...logits.keys()].filter((i) => logits[i] !== -Infinity);
    expect(kept).toEqual(Array.from({ length: 0x40 }, (_, i) => 0x80 + i));
  });

  it("stays off for a vocabulary that could not finish a character", () => {
    const noBytes = [new TextEncoder().encode("a"), Uint8Array.of(0xe0)];
    expect(Utf8Guard.build(noBytes, new Set())).toBeNull();
  });
});

describe("token bytes from tokenizer.json", () => {
  const read = (dir: string) => JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));

  it("ByteLevel BPE (the embedded model): every byte once", () => {
    const bytes = tokenBytesOf(read(EMBEDDED_MODEL_DIR))!;
    const singles = bytes.filter((b): b is Uint8Array => b !== null);
    expect(new Set(singles.map((b) => b[0])).size).toBe(256);
    expect(singles.every((b) => b.length === 1)).toBe(true);
  });

  it("BPE with byte fallback (the fp16 Llama fixture): <0xHH> tokens and pieces with their spaces", () => {
    const json = read(FIXTURE_MODEL_DIR);
    const bytes = tokenBytesOf(json)!;
    const vocab = json.model.vocab as Record<string, number>;
    expect([...bytes[vocab["<0xE0>"]!]!]).toEqual([0xe0]);
    expect(new TextDecoder().decode(bytes[vocab["▁the"]!]!)).toBe(" the");
    expect(bytes[vocab["</s>"]!]).toBeNull();
  });
});

describe("the engine on the embedded byte-level model", () => {
  const models = new Map<boolean, Promise<LoadedModel>>();
  const model = (validUtf8: boolean) => {
    if (!models.has(validUtf8))
      models.set(
        validUtf8,
        loadModel(EMBEDDED_MODEL_DIR, { executionProvider: "cpu", maxBatch: 16, maxQueue: 64, validUtf8 }),
      );
    return models.get(validUtf8)!;
  };
  const reply = (
    m: LoadedModel,
    prompt: string,
    sampling: { temperature: number; max_tokens: number; seed?: number },
  ) =>
    new Promise<string>((resolve, reject) => {
      let text = "";
      m.engine.submit({
        promptIds: m.tokenizer.promptIds([{ role: "user", content: prompt }]),
        sampling: { top_p: 1, stop: [], ...sampling },
        delta: null,
        signal: new AbortController().signal,
        emit(frame) {
          if (frame.type === "text") text += frame.text;
          else if (frame.type === "end") resolve(text);
          else if (frame.type === "error") reject(new Error(frame.error.message));
        },
      });
    });
  const PROMPTS = [
    "ช่วยอธิบายเรื่องสภาพอากาศหน่อย",
    "请介绍一下北京的天气",
    "東京の天気について教えてください",
    "서울 날씨에 대해 알려 주세요",
  ];
  const CASES = PROMPTS.flatMap((p, i) =>
    Array.from({ length: 12 }, (_, k) => ({ p, seed: 100 * i + k, max: 3 + ((7 * k + i) % 17) })),
  );

  it("samples replies with no U+FFFD at all, where the raw model's contain some", async () => {
    const [guarded, raw] = await Promise.all([model(true), model(false)]);
    const sampling = (c: (typeof CASES)[number]) => ({ temperature: 1.3, max_tokens: c.max, seed: c.seed });
    const withGuard = await Promise.all(CASES.map((c) => reply(guarded, c.p, sampling(c))));
    const without = await Promise.all(CASES.map((c) => reply(raw, c.p, sampling(c))));
    console.log(
      `U+FFFD replies: ${withGuard.filter((t) => t.includes("\uFFFD")).length}/${CASES.length} guarded, ${without.filter((t) => t.includes("\uFFFD")).length}/${CASES.length} raw`,
    );
    expect(withGuard.filter((t) => t.includes("\uFFFD"))).toEqual([]);
    // Without the guard the same sampling breaks characters: the check above can fail.
    expect(without.filter((t) => t.includes("\uFFFD")).length).toBeGreaterThan(0);
  });

  it("leaves replies that were valid anyway untouched, token for token", async () => {
    const [guarded, raw] = await Promise.all([model(true), model(false)]);
    for (const p of [...PROMPTS, "What is the capital of France?", "Habari za asubuhi?"]) {
      const plain = await reply(raw, p, { temperature: 0, max_tokens: 32 });
      if (plain.includes("\uFFFD")) continue;
      expect(await reply(guarded, p, { temperature: 0, max_tokens: 32 }), p).toBe(plain);
    }
  });
});
