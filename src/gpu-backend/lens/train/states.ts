/**
 * Hidden states for training a Lens delta at one layer: per prompt, the residual stream's value at the
 * LAST prompt token and its MEAN over all the prompt's token positions, unedited (h0).
 *
 * Why a session of its own: `HiddenStateCollector` keeps only the last position, and the retain term
 * (docs/design.md: MSE(mean_t h(x_en), mean_t h_ref(x_en))) needs the mean over positions. The graph is the
 * same one the collector runs (the residual stream exposed as an output by `insertDeltaHooks` with no
 * delta layers, so the states are the unedited model's), the prompts are templated and cut exactly as
 * the collector's (`probePromptIds`, or the collector's own `promptIds` when one is given), and the
 * batching is the same (left-padded, shortest first), so last-token states agree with the collector's
 * to rounding.
 *
 * Mean over positions: over the prompt's real tokens only (pads are masked out). The reference averages
 * `hidden_states[-1].mean(dim=1)` over its padded batch, pads included; with left padding that would mix
 * in states of pad positions that depend on the batch, so the masked mean is used here.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { leftPaddedFeeds } from "../left-padded-feeds.js";
import { floatData } from "../../model/float-tensor.js";
import { ModelRunner } from "../../generation/model-runner.js";
import { insertDeltaHooks } from "../../graph/delta-hooks.js";
import { ChatTokenizer } from "../../model/chat-tokenizer.js";
import { readModelDir, type ModelInfo } from "../../model/model-dir.js";
import {
  DEFAULT_BATCH_SIZE,
  HiddenStateCollector,
  probePromptIds,
  type LoadedModel,
  type PromptOptions,
} from "../hidden-states.js";

/** Per prompt (in prompt order), float64, row-major [count x hiddenSize]. */
export interface PromptStates {
  layer: number;
  hiddenSize: number;
  count: number;
  /** h0 at the last prompt token. */
  last: Float64Array;
  /** h0 averaged over the prompt's token positions. */
  mean: Float64Array;
}

export interface PositionStatesOptions extends PromptOptions {
  /** Prompts per forward pass (default as the collector's). */
  batchSize?: number;
  sessionOptions?: ort.InferenceSession.SessionOptions;
  /** Checked between batches. */
  signal?: AbortSignal;
}

/** All-position hidden states at one layer, reduced to (last, mean) per prompt. */
export class PositionStateReader {
  private constructor(
    readonly info: ModelInfo,
    readonly layer: number,
    private readonly session: ort.InferenceSession,
    private readonly hiddenName: string,
    private readonly kvFp16: boolean,
    private readonly ids: (text: string) => number[],
    private readonly options: PositionStatesOptions,
  ) {}

  /**
   * `model`: a model directory, parts already loaded, or a collector (its model, tokenizer and prompt
   * settings are used; its session is not, since it returns the last position only).
   */
  static async create(
    model: string | LoadedModel | HiddenStateCollector,
    layer: number,
    options: PositionStatesOptions = {},
  ): Promise<PositionStateReader> {
    let info: ModelInfo;
    let ids: (text: string) => number[];
    if (model instanceof HiddenStateCollector) {
      info = model.info;
      ids = (text) => model.promptIds(text);
    } else {
      info = typeof model === "string" ? readModelDir(model) : model.info;
      const tokenizer = typeof model === "string" ? ChatTokenizer.fromDir(info.dir) : model.tokenizer;
      ids = (text) => probePromptIds(tokenizer, text, options);
    }
    if (!Number.isInteger(layer) || layer < 0 || layer >= info.numLayers) {
      throw new RangeError(`layer ${layer} is out of range: the model has layers 0..${info.numLayers - 1}`);
    }
    const graph = insertDeltaHooks(
      readFileSync(info.onnxPath),
      { deltaLayers: [], exposeHidden: [layer] },
      { numLayers: info.numLayers, hiddenSize: info.hiddenSize },
    );
    const externalData = graph.externalData.map((path) => ({ path, data: readFileSync(join(info.dir, path)) }));
    const session = await ort.InferenceSession.create(graph.bytes, {
      ...options.sessionOptions,
      ...(externalData.length > 0 ? { externalData } : {}),
    });
    const name = graph.hiddenOutputs.find((h) => h.layer === layer)!.name;
    return new PositionStateReader(info, layer, session, name, ModelRunner.kvIsFp16(session, info), ids, options);
  }

  promptIds(text: string): number[] {
    return this.ids(text);
  }

  async read(prompts: readonly string[]): Promise<PromptStates> {
    return this.readIds(prompts.map((p) => this.ids(p)));
  }

  async readIds(prompts: readonly number[][]): Promise<PromptStates> {
    const d = this.info.hiddenSize;
    const count = prompts.length;
    const last = new Float64Array(count * d);
    const mean = new Float64Array(count * d);
    const batchSize = Math.max(1, this.options.batchSize ?? DEFAULT_BATCH_SIZE);
    // Similar lengths together (less padding); results go back to prompt order. Index breaks ties, so
    // the batches, and so the bits, are the same on every run.
    const order = prompts.map((_, i) => i).sort((a, b) => prompts[a]!.length - prompts[b]!.length || a - b);
    for (let start = 0; start < count; start += batchSize) {
      this.options.signal?.throwIfAborted();
      const rows = order.slice(start, start + batchSize);
      await this.forward(
        rows.map((i) => prompts[i]!),
        rows.map((i) => i),
        last,
        mean,
      );
    }
    return { layer: this.layer, hiddenSize: d, count, last, mean };
  }

  /** One left-padded batch from an empty cache; writes each row's last and mean state at its prompt index. */
  private async forward(
    rows: readonly number[][],
    targets: readonly number[],
    last: Float64Array,
    mean: Float64Array,
  ): Promise<void> {
    const { info } = this;
    if (rows.some((r) => r.length === 0)) throw new RangeError("an empty prompt has no last token");
    const T = Math.max(...rows.map((r) => r.length));
    const feeds: Record<string, ort.Tensor> = leftPaddedFeeds(info, this.session.inputNames, rows, this.kvFp16);
    const out = await this.session.run(feeds, [this.hiddenName]);
    const h = floatData(out[this.hiddenName]!);
    const d = info.hiddenSize;
    rows.forEach((row, r) => {
      const offset = T - row.length;
      const at = targets[r]! * d;
      for (let i = 0; i < d; i++) last[at + i] = h[(r * T + T - 1) * d + i]!;
      // float64 sum over the real positions, in position order.
      for (let t = offset; t < T; t++) {
        const base = (r * T + t) * d;
        for (let i = 0; i < d; i++) mean[at + i]! += h[base + i]!;
      }
      for (let i = 0; i < d; i++) mean[at + i]! /= row.length;
    });
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
