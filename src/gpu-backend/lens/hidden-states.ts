/**
 * Hidden states for the Lens probe: the residual stream after chosen layers at the LAST prompt token,
 * for prompts with the chat template applied (a single user message, plus a system one when given,
 * and the generation prompt), as the reference probe collects them.
 *
 * The session is the model's graph with the residual stream exposed as outputs
 * (`insertDeltaHooks(..., { deltaLayers: [], exposeHidden })`), which leaves the logits as they were.
 *
 * Truncation to `maxPromptTokens` (64, as the reference). The reference tokenises the rendered prompt
 * with `truncation=True, max_length=64` and Hugging Face's default `truncation_side="right"`, so it keeps
 * the FIRST 64 tokens: a long prompt then loses its end of turn and generation prompt, and its "last
 * token" is some token in the middle of the user's text, at a different place for every language (byte
 * counts differ by script). That mixes "where in the text" into what should be "which language". So the
 * default here ("content") keeps the chat frame whole and shortens the user's text from its end (whole
 * code points, largest prefix that fits): the last token is always the last token of the generation
 * prompt, and the text kept is its beginning, as in the reference. "head" reproduces the reference's
 * cut exactly, for comparison.
 *
 * Batching. Prompts run in left-padded batches (attention mask 0 on pads, position ids counting real
 * tokens only, so the last column is every row's last token), shortest first so a batch pads little.
 * Measured on 2 CPU cores busy with other work, 192 probe prompts in 12 languages, one thread per
 * session, median of 3 rounds: the embedded fp32 model (56 tokens per prompt on average, byte tokenizer)
 * took 2.6 ms per prompt one at a time, 2.25 in batches of 4, 2.1 in batches of 8 or 16 (calls are short,
 * so the per-call overhead is a good part of the work); the fp16 fixture (33 tokens) went the other way,
 * 2.2 ms one at a time against 3.4 in batches of 8 (onnxruntime's CPU fp16 kernels gain nothing from
 * batching and pay for the pads). With the default thread count both were 2-3x slower on this busy
 * machine. The default model is fp32 and GPUs are built for batches (not measured here), so the default
 * is 8; pass `batchSize: 1` for fp16 models on CPU. Batched and one-at-a-time states agree to rounding
 * (the tests check it on both models).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { leftPaddedFeeds } from "./left-padded-feeds.js";
import { floatData } from "../model/float-tensor.js";
import type { BackendMessage } from "../../protocol/backend.js";
import { ModelRunner } from "../generation/model-runner.js";
import { insertDeltaHooks } from "../graph/delta-hooks.js";
import { ChatTokenizer } from "../model/chat-tokenizer.js";
import { readModelDir, type ModelInfo } from "../model/model-dir.js";

export type Truncation = "content" | "head";

export interface PromptOptions {
  /** Longest prompt in tokens, chat template included (default 64, as the reference). */
  maxPromptTokens?: number;
  /** How a longer prompt is cut (default "content"; see the file comment). */
  truncation?: Truncation;
  /** A system message before the user's (default none). */
  system?: string;
}

export interface CollectorOptions extends PromptOptions {
  /** Prompts per forward pass (default 8; see the file comment). */
  batchSize?: number;
  sessionOptions?: ort.InferenceSession.SessionOptions;
}

/** The model parts a collector needs, when the caller already has them loaded. */
export interface LoadedModel {
  info: ModelInfo;
  tokenizer: ChatTokenizer;
}

/** Last-token hidden states: per layer, `count` rows of `hiddenSize` values, row-major, in prompt order. */
export interface LastTokenStates {
  layers: number[];
  hiddenSize: number;
  count: number;
  byLayer: Map<number, Float32Array>;
}

export const DEFAULT_MAX_PROMPT_TOKENS = 64;
export const DEFAULT_BATCH_SIZE = 8;

/** The chat-templated prompt ids for one user text, cut to at most `maxPromptTokens`. */
export function probePromptIds(tokenizer: ChatTokenizer, text: string, options: PromptOptions = {}): number[] {
  const max = options.maxPromptTokens ?? DEFAULT_MAX_PROMPT_TOKENS;
  if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxPromptTokens must be a positive integer, got ${max}`);
  const render = (content: string) => {
    const messages: BackendMessage[] =
      options.system === undefined ? [] : [{ role: "system", content: options.system }];
    messages.push({ role: "user", content });
    return tokenizer.promptIds(messages);
  };
  const full = render(text);
  if (full.length <= max) return full;
  if ((options.truncation ?? "content") === "head") return full.slice(0, max);

  // Largest prefix of the text (in code points) whose rendered prompt fits. Token counts grow with the
  // prefix (they may dip by a token where a merge forms, which only makes the search conservative).
  const points = Array.from(text);
  let lo = 0;
  let hi = points.length - 1;
  let best: number[] | null = null;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const ids = render(points.slice(0, mid).join(""));
    if (ids.length <= max) {
      best = ids;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  // The frame alone is longer than the limit: keep its end, so the last token is still the generation prompt's.
  return best ?? full.slice(full.length - max);
}

interface ForwardResult {
  /** Per exposed layer: [rows x hidden] at each row's last token. */
  hidden: Map<number, Float32Array>;
  /** [rows x vocab] at each row's last token, when asked for. */
  logits?: Float32Array;
}

export class HiddenStateCollector {
  private constructor(
    readonly info: ModelInfo,
    readonly tokenizer: ChatTokenizer,
    readonly layers: number[],
    private readonly session: ort.InferenceSession,
    private readonly hiddenNames: Map<number, string>,
    private readonly kvFp16: boolean,
    private readonly options: CollectorOptions,
  ) {}

  /** Loads the model (a directory, or parts already loaded) with the residual stream after `layers` exposed. */
  static async create(
    model: string | LoadedModel,
    layers: number[],
    options: CollectorOptions = {},
  ): Promise<HiddenStateCollector> {
    const info = typeof model === "string" ? readModelDir(model) : model.info;
    const tokenizer = typeof model === "string" ? ChatTokenizer.fromDir(info.dir) : model.tokenizer;
    if (layers.length === 0) throw new RangeError("no layers to collect");
    const graph = insertDeltaHooks(
      readFileSync(info.onnxPath),
      { deltaLayers: [], exposeHidden: layers },
      { numLayers: info.numLayers, hiddenSize: info.hiddenSize },
    );
    const externalData = graph.externalData.map((path) => ({ path, data: readFileSync(join(info.dir, path)) }));
    const session = await ort.InferenceSession.create(graph.bytes, {
      ...options.sessionOptions,
      ...(externalData.length > 0 ? { externalData } : {}),
    });
    const names = new Map(graph.hiddenOutputs.map((h) => [h.layer, h.name]));
    const sorted = [...names.keys()].sort((a, b) => a - b);
    return new HiddenStateCollector(
      info,
      tokenizer,
      sorted,
      session,
      names,
      ModelRunner.kvIsFp16(session, info),
      options,
    );
  }

  promptIds(text: string): number[] {
    return probePromptIds(this.tokenizer, text, this.options);
  }

  /** Last-token states of each prompt at every collected layer, in prompt order. */
  async collect(prompts: readonly string[]): Promise<LastTokenStates> {
    return this.collectIds(prompts.map((p) => this.promptIds(p)));
  }

  /** As `collect`, from token ids (already templated and truncated). */
  async collectIds(prompts: readonly number[][]): Promise<LastTokenStates> {
    const d = this.info.hiddenSize;
    const count = prompts.length;
    const byLayer = new Map(this.layers.map((l) => [l, new Float32Array(count * d)]));
    const batchSize = Math.max(1, this.options.batchSize ?? DEFAULT_BATCH_SIZE);
    // Batches of similar length waste less on padding; results go back to prompt order.
    const order = prompts.map((_, i) => i).sort((a, b) => prompts[a]!.length - prompts[b]!.length || a - b);
    for (let start = 0; start < count; start += batchSize) {
      const rows = order.slice(start, start + batchSize);
      const out = await this.forward(rows.map((i) => prompts[i]!));
      for (const [layer, states] of out.hidden) {
        const target = byLayer.get(layer)!;
        rows.forEach((i, r) => target.set(states.subarray(r * d, (r + 1) * d), i * d));
      }
    }
    return { layers: this.layers, hiddenSize: d, count, byLayer };
  }

  /**
   * One forward pass over left-padded rows from an empty cache. Returns the last-token hidden states
   * (and the last-token logits when `withLogits`, which the tests compare with the unedited model).
   */
  async forward(rows: readonly number[][], withLogits = false): Promise<ForwardResult> {
    const { info } = this;
    const n = rows.length;
    if (n === 0) return { hidden: new Map(this.layers.map((l) => [l, new Float32Array(0)])) };
    const T = Math.max(...rows.map((r) => r.length));
    if (rows.some((r) => r.length === 0)) throw new RangeError("an empty prompt has no last token");
    const feeds: Record<string, ort.Tensor> = leftPaddedFeeds(info, this.session.inputNames, rows, this.kvFp16);
    const fetches = [...this.hiddenNames.values()];
    if (withLogits) fetches.push(info.io.logits);
    const out = await this.session.run(feeds, fetches);

    const d = info.hiddenSize;
    const hidden = new Map<number, Float32Array>();
    for (const [layer, name] of this.hiddenNames) {
      hidden.set(layer, lastPositions(floatData(out[name]!), n, T, d));
    }
    const result: ForwardResult = { hidden };
    if (withLogits)
      result.logits = lastPositions(floatData(out[info.io.logits]!), n, T, out[info.io.logits]!.dims[2] as number);
    return result;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** [rows, T, width] -> [rows, width] at position T - 1. */
function lastPositions(all: Float32Array, rows: number, T: number, width: number): Float32Array {
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) out.set(all.subarray((r * T + T - 1) * width, (r * T + T) * width), r * width);
  return out;
}
