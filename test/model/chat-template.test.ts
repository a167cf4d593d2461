/**
 * The Jinja chat_template shipped in models/lens-tiny-chat/tokenizer_config.json must render a conversation
 * exactly as the training data was formatted (data/lens-prompts/chat-format-samples.jsonl is written by
 * tools/lens-tiny-chat/build_data.py with the same function that rendered the training text), and the
 * tokenizer must give the same ids the model was trained on.
 */
import { readFileSync } from "node:fs";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { describe, expect, it } from "vitest";

interface Sample {
  lang: string;
  messages: { role: string; content: string }[];
  add_generation_prompt: boolean;
  rendered: string;
  ids: number[];
}

const DIR = "models/lens-tiny-chat";
const tokJson = JSON.parse(readFileSync(`${DIR}/tokenizer.json`, "utf8")) as object;
const tokCfg = JSON.parse(readFileSync(`${DIR}/tokenizer_config.json`, "utf8")) as {
  chat_template: string;
  eos_token: string;
};
const samples = readFileSync("data/lens-prompts/chat-format-samples.jsonl", "utf8")
  .split("\n")
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l) as Sample);

describe("lens-tiny-chat chat template", () => {
  const template = new Template(tokCfg.chat_template);
  const tokenizer = new Tokenizer(tokJson, tokCfg);

  it("has samples for several languages", () => {
    expect(new Set(samples.map((s) => s.lang)).size).toBeGreaterThanOrEqual(10);
  });

  it("renders every training-format sample identically, to the same token ids", () => {
    for (const s of samples) {
      const text = template.render({ messages: s.messages, add_generation_prompt: s.add_generation_prompt });
      expect(text).toBe(s.rendered);
      expect(tokenizer.encode(text).ids).toEqual(s.ids);
    }
  });

  it("uses the documented turn layout", () => {
    const text = template.render({
      messages: [
        { role: "user", content: "Define river." },
        { role: "assistant", content: "A large stream." },
        { role: "user", content: "¿Y lago?" },
      ],
      add_generation_prompt: true,
    });
    expect(text).toBe(
      "<|user|>\nDefine river.<|end|>\n<|assistant|>\nA large stream.<|end|>\n<|user|>\n¿Y lago?<|end|>\n<|assistant|>\n",
    );
    expect(tokCfg.eos_token).toBe("<|end|>");
  });
});
