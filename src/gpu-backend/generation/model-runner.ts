/**
 * One forward pass of the decoder over a batch: builds the ONNX inputs (ids, mask, positions, past
 * key/values), runs the session, and returns the last position's logits per row and the new cache.
 */
import * as ort from "onnxruntime-node";
import type { ModelInfo } from "../model/model-dir.js";
import { floatData } from "../model/float-tensor.js";
import type { KvArray, KvBatch, KvShape } from "./kv-batch.js";

export interface StepInput {
  /** The rows' cache so far (its rows are the batch's rows). */
  kv: KvBatch;
  /**
   * New tokens per row. Rows may differ in length: shorter rows are padded on the left (masked
   * out), so prompts of different lengths can be prefilled in one pass.
   */
  tokens: number[][];
  /** Position of each row's first real new token. */
  positions: number[];
  /** Extra inputs (the delta hooks' A, B, bias) when the session is the hooked one. */
  extraFeeds?: Record<string, ort.Tensor>;
}

export interface StepOutput {
  /** [rows * vocab]: logits of each row's last new position. */
  logits: Float32Array;
  vocab: number;
  kv: KvBatch;
  /** Extra outputs requested by name (e.g. exposed hidden states), as returned. */
  extra: Record<string, ort.Tensor>;
}

export class ModelRunner {
  readonly shape: KvShape;

  constructor(
    readonly info: ModelInfo,
    private readonly session: ort.InferenceSession,
    fp16: boolean,
  ) {
    this.shape = { layers: info.numLayers, kvHeads: info.numKvHeads, headSize: info.headSize, fp16 };
  }

  /** The dtype of the model's past key/value inputs. */
  static kvIsFp16(session: ort.InferenceSession, info: ModelInfo): boolean {
    const meta = session.inputMetadata.find((m) => m.name === info.io.pastKey(0));
    return meta?.isTensor === true && meta.type === "float16";
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  async step(input: StepInput, extraOutputs: string[] = []): Promise<StepOutput> {
    const { info, shape } = this;
    const rows = input.tokens.length;
    const seq = Math.max(0, ...input.tokens.map((t) => t.length));
    if (rows !== input.kv.rows) throw new Error(`step: ${rows} token rows for a cache of ${input.kv.rows}`);
    const past = input.kv.length;
    const total = past + seq;

    const ids = new BigInt64Array(rows * seq);
    const positions = new BigInt64Array(rows * seq);
    // The mask is built once as bytes (cheap) and converted in one pass: BigInt per element is slow.
    const maskBytes = new Uint8Array(rows * total);
    for (let r = 0; r < rows; r++) {
      const toks = input.tokens[r] as number[];
      const pad = seq - toks.length;
      const start = input.positions[r] as number;
      for (let s = 0; s < toks.length; s++) {
        ids[r * seq + pad + s] = BigInt(toks[s] as number);
        positions[r * seq + pad + s] = BigInt(start + s);
      }
      maskBytes.set(input.kv.mask.subarray(r * past, (r + 1) * past), r * total);
      maskBytes.fill(1, r * total + past + pad, (r + 1) * total);
    }
    const mask = BigInt64Array.from(maskBytes, (b) => (b ? 1n : 0n));
    const kvType = shape.fp16 ? "float16" : "float32";
    const feeds: Record<string, ort.Tensor> = {
      [info.io.inputIds]: new ort.Tensor("int64", ids, [rows, seq]),
      [info.io.attentionMask]: new ort.Tensor("int64", mask, [rows, total]),
      ...input.extraFeeds,
    };
    if (info.io.positionIds && this.session.inputNames.includes(info.io.positionIds)) {
      feeds[info.io.positionIds] = new ort.Tensor("int64", positions, [rows, seq]);
    }
    const dims = [rows, shape.kvHeads, past, shape.headSize];
    for (let l = 0; l < shape.layers; l++) {
      feeds[info.io.pastKey(l)] = new ort.Tensor(kvType, input.kv.keys[l] as KvArray, dims);
      feeds[info.io.pastValue(l)] = new ort.Tensor(kvType, input.kv.values[l] as KvArray, dims);
    }

    const out = await this.session.run(feeds);
    const logitsTensor = out[info.io.logits];
    if (!logitsTensor) throw new Error(`the model has no output '${info.io.logits}'`);
    const vocab = logitsTensor.dims[2] as number;
    const all = floatData(logitsTensor);
    const logits = new Float32Array(rows * vocab);
    for (let r = 0; r < rows; r++)
      logits.set(all.subarray((r * seq + seq - 1) * vocab, (r * seq + seq) * vocab), r * vocab);

    const kv: KvBatch = { rows, length: total, keys: [], values: [], mask: new Uint8Array(rows * total) };
    for (let l = 0; l < shape.layers; l++) {
      kv.keys.push(out[info.io.presentKey(l)]?.data as KvArray);
      kv.values.push(out[info.io.presentValue(l)]?.data as KvArray);
    }
    kv.mask.set(maskBytes);
    const extra: Record<string, ort.Tensor> = {};
    for (const name of extraOutputs) if (out[name]) extra[name] = out[name];
    return { logits, vocab, kv, extra };
  }
}
