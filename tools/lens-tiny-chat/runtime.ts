/**
 * Minimal onnxruntime-node driver for the lens-tiny-chat export (genai_config.json layout), used by the
 * evaluation script and the model tests. Deliberately generic: names and sizes come from genai_config.json.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";

export interface GenaiConfig {
  model: {
    bos_token_id: number;
    eos_token_id: number;
    pad_token_id: number;
    context_length: number;
    vocab_size: number;
    type: string;
    decoder: {
      filename: string;
      head_size: number;
      hidden_size: number;
      num_attention_heads: number;
      num_hidden_layers: number;
      num_key_value_heads: number;
      inputs: Record<string, string>;
      outputs: Record<string, string>;
    };
  };
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface LoadedModel {
  dir: string;
  session: ort.InferenceSession;
  config: GenaiConfig;
  tokenizer: Tokenizer;
  chatTemplate: Template;
  eosId: number;
  vocabSize: number;
}

export type Past = ort.Tensor[]; // k0, v0, k1, v1, ...

export async function loadModel(dir: string): Promise<LoadedModel> {
  const config = JSON.parse(readFileSync(join(dir, "genai_config.json"), "utf8")) as GenaiConfig;
  const tokJson = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")) as object;
  const tokCfg = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")) as { chat_template: string };
  const session = await ort.InferenceSession.create(join(dir, config.model.decoder.filename), {
    executionProviders: ["cpu"],
    intraOpNumThreads: 1,
  });
  return {
    dir,
    session,
    config,
    tokenizer: new Tokenizer(tokJson, tokCfg),
    chatTemplate: new Template(tokCfg.chat_template),
    eosId: config.model.eos_token_id,
    vocabSize: config.model.vocab_size,
  };
}

export function renderChat(m: LoadedModel, messages: ChatMessage[], addGenerationPrompt: boolean): string {
  return m.chatTemplate.render({ messages, add_generation_prompt: addGenerationPrompt });
}

export function encode(m: LoadedModel, text: string): number[] {
  return m.tokenizer.encode(text).ids;
}

export function decode(m: LoadedModel, ids: number[], skipSpecial = true): string {
  return m.tokenizer.decode(ids, { skip_special_tokens: skipSpecial });
}

function names(m: LoadedModel, i: number) {
  const d = m.config.model.decoder;
  return {
    pastKey: d.inputs.past_key_names!.replace("%d", String(i)),
    pastValue: d.inputs.past_value_names!.replace("%d", String(i)),
    presentKey: d.outputs.present_key_names!.replace("%d", String(i)),
    presentValue: d.outputs.present_value_names!.replace("%d", String(i)),
  };
}

export function emptyPast(m: LoadedModel, batch = 1): Past {
  const d = m.config.model.decoder;
  const past: Past = [];
  for (let i = 0; i < d.num_hidden_layers * 2; i++) {
    past.push(new ort.Tensor("float32", new Float32Array(0), [batch, d.num_key_value_heads, 0, d.head_size]));
  }
  return past;
}

/** One decoder call for a single row. Returns logits [seq, vocab] (flattened) and the new cache. */
export async function step(
  m: LoadedModel,
  ids: number[],
  past: Past,
  pastLen: number,
): Promise<{ logits: Float32Array; present: Past }> {
  const d = m.config.model.decoder;
  const t = ids.length;
  const feeds: Record<string, ort.Tensor> = {
    [d.inputs.input_ids!]: new ort.Tensor("int64", BigInt64Array.from(ids.map((x) => BigInt(x))), [1, t]),
    [d.inputs.attention_mask!]: new ort.Tensor("int64", new BigInt64Array(pastLen + t).fill(1n), [1, pastLen + t]),
    [d.inputs.position_ids!]: new ort.Tensor(
      "int64",
      BigInt64Array.from(Array.from({ length: t }, (_, k) => BigInt(pastLen + k))),
      [1, t],
    ),
  };
  for (let i = 0; i < d.num_hidden_layers; i++) {
    const n = names(m, i);
    feeds[n.pastKey] = past[2 * i]!;
    feeds[n.pastValue] = past[2 * i + 1]!;
  }
  const out = await m.session.run(feeds);
  const present: Past = [];
  for (let i = 0; i < d.num_hidden_layers; i++) {
    const n = names(m, i);
    present.push(out[n.presentKey]!, out[n.presentValue]!);
  }
  return { logits: out[d.outputs.logits!]!.data as Float32Array, present };
}

export function argmax(a: Float32Array, offset: number, n: number): number {
  let best = 0;
  let bv = -Infinity;
  for (let j = 0; j < n; j++) {
    const v = a[offset + j]!;
    if (v > bv) {
      bv = v;
      best = j;
    }
  }
  return best;
}

/** Greedy decoding with the KV cache; stops at eos or maxNew tokens. Returns the new token ids. */
export async function greedy(m: LoadedModel, promptIds: number[], maxNew: number): Promise<number[]> {
  const V = m.vocabSize;
  let { logits, present } = await step(m, promptIds, emptyPast(m), 0);
  let pastLen = promptIds.length;
  const out: number[] = [];
  let next = argmax(logits, (promptIds.length - 1) * V, V);
  while (out.length < maxNew && next !== m.eosId) {
    out.push(next);
    ({ logits, present } = await step(m, [next], present, pastLen));
    pastLen += 1;
    next = argmax(logits, 0, V);
  }
  return out;
}

/** Sum of -log2 p(token) over ids[from..] given ids[..from), in one full forward pass. */
export async function bitsOf(m: LoadedModel, ids: number[], from: number): Promise<number> {
  const V = m.vocabSize;
  const { logits } = await step(m, ids, emptyPast(m), 0);
  let bits = 0;
  for (let pos = from; pos < ids.length; pos++) {
    const off = (pos - 1) * V;
    let mx = -Infinity;
    for (let j = 0; j < V; j++) mx = Math.max(mx, logits[off + j]!);
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(logits[off + j]! - mx);
    const lp = logits[off + ids[pos]!]! - mx - Math.log(s);
    bits += -lp / Math.LN2;
  }
  return bits;
}
