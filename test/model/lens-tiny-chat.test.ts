/**
 * The committed default model (models/lens-tiny-chat) in onnxruntime-node: KV-cache decoding must give the
 * same next-token logits as a full forward pass, batched rows with left padding must match single rows,
 * and the byte-level tokenizer must round-trip text in every product language.
 */
import { readFileSync, statSync, readdirSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import {
  decode,
  emptyPast,
  encode,
  loadModel,
  renderChat,
  step,
  type LoadedModel,
} from "../../tools/lens-tiny-chat/runtime.js";

const DIR = "models/lens-tiny-chat";
let m: LoadedModel;

beforeAll(async () => {
  m = await loadModel(DIR);
});

function maxAbsDiff(a: Float32Array, aOff: number, b: Float32Array, bOff: number, n: number): number {
  let d = 0;
  for (let j = 0; j < n; j++) d = Math.max(d, Math.abs(a[aOff + j]! - b[bOff + j]!));
  return d;
}

const SAMPLES: Record<string, string> = {
  en: "What does the word harbour mean?",
  zh: "请解释这个词的意思。",
  ja: "この言葉はどういう意味ですか？",
  ko: "이 단어는 무슨 뜻인가요?",
  ar: "ما معنى هذه الكلمة؟",
  bn: "এই শব্দের অর্থ কী?",
  sw: "Neno hili lina maana gani?",
  es: "¿Qué significa esta palabra, señor?",
  fr: "Que signifie ce mot, s'il vous plaît ?",
  de: "Was bedeutet dieses Wort für Größe?",
  ru: "Что означает это слово?",
  hi: "इस शब्द का क्या अर्थ है?",
  th: "คำนี้หมายความว่าอย่างไร",
};

describe("lens-tiny-chat export layout", () => {
  it("has the files an ONNX Runtime / Hugging Face loader expects, under the size limit", () => {
    const names = readdirSync(DIR);
    for (const f of ["model.onnx", "genai_config.json", "config.json", "tokenizer.json", "tokenizer_config.json"]) {
      expect(names).toContain(f);
    }
    const total = names.reduce((s, f) => s + statSync(join(DIR, f)).size, 0);
    expect(total).toBeLessThanOrEqual(15 * 1024 * 1024);
  });

  it("declares the KV-cache inputs and outputs by the genai_config names", () => {
    const d = m.config.model.decoder;
    const inputs = ["input_ids", "attention_mask", "position_ids"];
    const outputs = ["logits"];
    for (let i = 0; i < d.num_hidden_layers; i++) {
      inputs.push(`past_key_values.${i}.key`, `past_key_values.${i}.value`);
      outputs.push(`present.${i}.key`, `present.${i}.value`);
    }
    expect([...m.session.inputNames].sort()).toEqual(inputs.sort());
    expect([...m.session.outputNames].sort()).toEqual(outputs.sort());
    const hf = JSON.parse(readFileSync(join(DIR, "config.json"), "utf8")) as Record<string, unknown>;
    expect(hf.num_hidden_layers).toBe(d.num_hidden_layers);
    expect(hf.hidden_size).toBe(d.hidden_size);
    expect(hf.eos_token_id).toBe(m.config.model.eos_token_id);
  });
});

describe("lens-tiny-chat KV cache", () => {
  it("decoding token by token with the cache gives the full-pass logits (1e-4)", async () => {
    const V = m.vocabSize;
    for (const [lang, text] of Object.entries(SAMPLES)) {
      const ids = encode(m, renderChat(m, [{ role: "user", content: text }], true));
      const full = await step(m, ids, emptyPast(m), 0);
      expect(full.logits.length).toBe(ids.length * V);
      const split = Math.max(1, Math.floor(ids.length / 2));
      // first call with an empty (length 0) cache, then one token at a time
      let r = await step(m, ids.slice(0, split), emptyPast(m), 0);
      expect(maxAbsDiff(r.logits, (split - 1) * V, full.logits, (split - 1) * V, V), lang).toBeLessThan(1e-4);
      for (let pos = split; pos < ids.length; pos++) {
        r = await step(m, [ids[pos]!], r.present, pos);
        expect(r.present[0]!.dims[2]).toBe(pos + 1);
        expect(maxAbsDiff(r.logits, 0, full.logits, pos * V, V), `${lang} @${pos}`).toBeLessThan(1e-4);
      }
    }
  });

  it("the cache changes the result: a wrong cache gives different logits", async () => {
    const V = m.vocabSize;
    const ids = encode(m, renderChat(m, [{ role: "user", content: SAMPLES.en! }], true));
    const full = await step(m, ids, emptyPast(m), 0);
    const other = encode(m, renderChat(m, [{ role: "user", content: SAMPLES.de! }], true));
    const p = await step(m, other.slice(0, ids.length - 1), emptyPast(m), 0);
    const r = await step(m, [ids[ids.length - 1]!], p.present, ids.length - 1);
    expect(maxAbsDiff(r.logits, 0, full.logits, (ids.length - 1) * V, V)).toBeGreaterThan(1e-3);
  });

  it("a left-padded batch of two rows matches each row run alone", async () => {
    const V = m.vocabSize;
    const d = m.config.model.decoder;
    const a = encode(m, renderChat(m, [{ role: "user", content: SAMPLES.fr! }], true));
    const b = encode(m, renderChat(m, [{ role: "user", content: SAMPLES.zh! }], true));
    const T = Math.max(a.length, b.length);
    const rows = [a, b];
    const ids = new BigInt64Array(2 * T);
    const mask = new BigInt64Array(2 * T);
    const pos = new BigInt64Array(2 * T);
    rows.forEach((row, r) => {
      const pad = T - row.length;
      for (let k = 0; k < T; k++) {
        ids[r * T + k] = BigInt(k < pad ? m.config.model.pad_token_id : row[k - pad]!);
        mask[r * T + k] = k < pad ? 0n : 1n;
        pos[r * T + k] = BigInt(Math.max(0, k - pad));
      }
    });
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", ids, [2, T]),
      attention_mask: new ort.Tensor("int64", mask, [2, T]),
      position_ids: new ort.Tensor("int64", pos, [2, T]),
    };
    for (let i = 0; i < d.num_hidden_layers; i++) {
      for (const kind of ["key", "value"]) {
        feeds[`past_key_values.${i}.${kind}`] = new ort.Tensor("float32", new Float32Array(0), [
          2,
          d.num_key_value_heads,
          0,
          d.head_size,
        ]);
      }
    }
    const out = await m.session.run(feeds);
    const logits = out.logits!.data as Float32Array;
    for (const [r, row] of rows.entries()) {
      const alone = await step(m, row, emptyPast(m), 0);
      const last = (r * T + T - 1) * V;
      expect(maxAbsDiff(logits, last, alone.logits, (row.length - 1) * V, V)).toBeLessThan(1e-4);
    }
  });
});

describe("lens-tiny-chat tokenizer", () => {
  it("round-trips text in every product language, one token per UTF-8 byte", () => {
    const texts = [
      ...Object.values(SAMPLES),
      "emoji 👩🏽‍💻 and e\u0301 combining, tabs\tand\nnewlines  ",
      "মা, ঢাকা",
      "𠜎𠜱 (astral Han)",
    ];
    for (const text of texts) {
      const ids = encode(m, text);
      expect(ids).toEqual([...Buffer.from(text, "utf8")]);
      expect(decode(m, ids)).toBe(text);
    }
    // characters that span several tokens
    expect(encode(m, "世")).toHaveLength(3);
    expect(encode(m, "👩🏽‍💻").length).toBeGreaterThan(4);
    expect(encode(m, "অ")).toHaveLength(3);
  });

  it("encodes the chat special tokens as single ids and skips them when asked", () => {
    const text = renderChat(m, [{ role: "user", content: "hi" }], true);
    const ids = encode(m, text);
    const cfg = JSON.parse(readFileSync(join(DIR, "tokenizer.json"), "utf8")) as {
      added_tokens: { id: number; content: string }[];
    };
    const special = new Map(cfg.added_tokens.map((t) => [t.content, t.id]));
    expect(ids[0]).toBe(special.get("<|user|>"));
    expect(ids).toContain(special.get("<|end|>"));
    expect(ids).toContain(special.get("<|assistant|>"));
    expect(special.get("<|end|>")).toBe(m.eosId);
    expect(decode(m, ids, false)).toBe(text);
    expect(decode(m, ids, true)).toBe("\nhi\n\n");
  });
});
