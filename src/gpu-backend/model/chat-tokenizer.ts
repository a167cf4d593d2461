/**
 * The model's tokenizer (`tokenizer.json`, via the official Hugging Face tokenizers library) and
 * chat template (`tokenizer_config.json`'s Jinja `chat_template`, via @huggingface/jinja), used
 * the way Hugging Face's `apply_chat_template` does: render, then encode without adding specials.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import type { BackendMessage } from "../../protocol/backend.js";
import { tokenBytesOf } from "../generation/utf8-guard.js";

type TokenSpec = string | { content: string } | null | undefined;
const tokenText = (t: TokenSpec): string | null => (t == null ? null : typeof t === "string" ? t : t.content);

interface TokenizerConfig {
  chat_template?: string | Array<{ name: string; template: string }>;
  bos_token?: TokenSpec;
  eos_token?: TokenSpec;
  [key: string]: unknown;
}

export class ChatTokenizer {
  readonly tokenizer: Tokenizer;
  private readonly template: Template;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  /** Ids of special tokens: never shown in generated text. */
  readonly specialIds: ReadonlySet<number>;
  /** The bytes each token decodes to, for byte-level tokenizers; null otherwise. */
  readonly tokenBytes: (Uint8Array | null)[] | null;

  constructor(tokenizerJson: object, config: TokenizerConfig) {
    this.tokenizer = new Tokenizer(tokenizerJson, config);
    const raw = config.chat_template;
    const source = Array.isArray(raw) ? (raw.find((t) => t.name === "default") ?? raw[0])?.template : raw;
    if (!source) throw new Error("tokenizer_config.json has no chat_template");
    this.template = new Template(source);
    this.bosToken = tokenText(config.bos_token);
    this.eosToken = tokenText(config.eos_token);
    this.specialIds = new Set(this.tokenizer.get_added_tokens_decoder().keys());
    this.tokenBytes = tokenBytesOf(tokenizerJson);
  }

  static fromDir(dir: string): ChatTokenizer {
    const json = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")) as object;
    const config = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")) as TokenizerConfig;
    return new ChatTokenizer(json, config);
  }

  renderChat(messages: readonly BackendMessage[], addGenerationPrompt = true): string {
    return this.template.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: this.bosToken ?? "",
      eos_token: this.eosToken ?? "",
    });
  }

  encode(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  promptIds(messages: readonly BackendMessage[]): number[] {
    return this.encode(this.renderChat(messages));
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return "";
    return this.tokenizer.decode(ids as number[], { skip_special_tokens: true });
  }

  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }
}
