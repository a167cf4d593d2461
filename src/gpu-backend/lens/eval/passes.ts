/**
 * The passes every figure of the evaluation shares (fidelity.ts alone generates through the engine).
 * Full-sequence forward passes for evaluating deltas: the model's graph with the delta hook inserted at
 * a delta's layers (graph/delta-hooks.ts, the same surgery the engine uses) and chosen residual-stream
 * layers exposed, run over left-padded rows from an empty cache. Unlike ModelRunner (last position
 * only), a pass returns the logits at EVERY position, which bits per byte and the all-position drift
 * need, and the hidden states after the hook, which the alignment figures need.
 *
 * The unedited model runs through a graph with no hook (only exposed outputs, which leave the logits as
 * they were); an edited one through a graph hooked at exactly the delta's layers. One session is kept
 * per set of edited layers.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { leftPaddedFeeds } from "../left-padded-feeds.js";
import { floatData } from "../../model/float-tensor.js";
import type { DeltaLayer } from "../../../protocol/delta.js";
import { floatToHalfBits } from "../../../protocol/half.js";
import { ModelRunner } from "../../generation/model-runner.js";
import { insertDeltaHooks } from "../../graph/delta-hooks.js";
import type { ModelInfo } from "../../model/model-dir.js";

/** A delta's layers as decoded from its file (DeltaStore.get(id).layers, validateDelta's delta.layers). */
export type DeltaLayers = ReadonlyMap<number, DeltaLayer>;

export interface NamedDelta {
  /** Unique per delta (the engine caches hook inputs by it). */
  id: string;
  layers: DeltaLayers;
}

export interface PassOutput {
  rows: number;
  /** Padded length: row r's real tokens sit at positions T - length_r .. T - 1. */
  T: number;
  lengths: number[];
  vocab: number;
  /** [rows, T, vocab] when asked for, else empty. */
  logits: Float32Array;
  /** Per exposed layer asked for: [rows, T, hidden], after the delta where the layer is edited. */
  hidden: Map<number, Float32Array>;
}

interface Graph {
  session: ort.InferenceSession;
  deltaInputs: Array<{ layer: number; a: string; b: string; bias: string }>;
  hiddenNames: Map<number, string>;
  fp16: boolean;
  kvFp16: boolean;
}

export class ForwardPasses {
  private readonly graphs = new Map<string, Promise<Graph>>();
  private readonly modelBytes: Uint8Array;

  constructor(
    readonly info: ModelInfo,
    /** Layers whose residual stream each pass can return. */
    readonly exposeHidden: readonly number[],
    private readonly sessionOptions: ort.InferenceSession.SessionOptions = {},
  ) {
    this.modelBytes = readFileSync(info.onnxPath);
  }

  private graph(layers: readonly number[]): Promise<Graph> {
    const key = layers.join(",");
    let g = this.graphs.get(key);
    if (!g) {
      g = this.build(layers);
      this.graphs.set(key, g);
    }
    return g;
  }

  private async build(layers: readonly number[]): Promise<Graph> {
    const { info } = this;
    const graph = insertDeltaHooks(
      this.modelBytes,
      { deltaLayers: [...layers], exposeHidden: [...this.exposeHidden] },
      { numLayers: info.numLayers, hiddenSize: info.hiddenSize },
    );
    const externalData = graph.externalData.map((path) => ({ path, data: readFileSync(join(info.dir, path)) }));
    const session = await ort.InferenceSession.create(graph.bytes, {
      ...this.sessionOptions,
      ...(externalData.length ? { externalData } : {}),
    });
    return {
      session,
      deltaInputs: graph.deltaInputs,
      hiddenNames: new Map(graph.hiddenOutputs.map((h) => [h.layer, h.name])),
      fp16: graph.dtype === "float16",
      kvFp16: ModelRunner.kvIsFp16(session, info),
    };
  }

  /**
   * One pass over `rows` (token ids, each non-empty) with `delta` applied to every row at every
   * position (null: the unedited graph). `want.logits` (default true) and `want.hidden` choose outputs.
   */
  async run(
    rows: readonly number[][],
    delta: DeltaLayers | null,
    want: { logits?: boolean; hidden?: readonly number[] } = {},
  ): Promise<PassOutput> {
    const { info } = this;
    const n = rows.length;
    if (n === 0) throw new RangeError("no rows");
    if (rows.some((r) => r.length === 0)) throw new RangeError("an empty row");
    const layers = delta ? [...delta.keys()].sort((a, b) => a - b) : [];
    const g = await this.graph(layers);
    const T = Math.max(...rows.map((r) => r.length));
    const feeds: Record<string, ort.Tensor> = leftPaddedFeeds(info, g.session.inputNames, rows, g.kvFp16);
    const d = info.hiddenSize;
    for (const input of g.deltaInputs) {
      const e = delta!.get(input.layer)!;
      const A = new Float32Array(n * d * e.rank);
      const B = new Float32Array(n * e.rank * d);
      const bias = new Float32Array(n * d);
      for (let r = 0; r < n; r++) {
        A.set(e.A, r * d * e.rank);
        B.set(e.B, r * e.rank * d);
        bias.set(e.b, r * d);
      }
      feeds[input.a] = this.tensor(g, A, [n, d, e.rank]);
      feeds[input.b] = this.tensor(g, B, [n, e.rank, d]);
      feeds[input.bias] = this.tensor(g, bias, [n, d]);
    }
    const hiddenWanted = want.hidden ?? [];
    const fetches: string[] = [];
    for (const layer of hiddenWanted) {
      const name = g.hiddenNames.get(layer);
      if (!name) throw new RangeError(`layer ${layer} is not exposed (exposed: ${this.exposeHidden.join(", ")})`);
      fetches.push(name);
    }
    const withLogits = want.logits ?? true;
    if (withLogits) fetches.push(info.io.logits);
    if (fetches.length === 0) throw new RangeError("nothing to fetch");
    const out = await g.session.run(feeds, fetches);
    const hidden = new Map<number, Float32Array>();
    for (const layer of hiddenWanted) hidden.set(layer, floatData(out[g.hiddenNames.get(layer)!]!));
    const logitsTensor = withLogits ? out[info.io.logits]! : null;
    return {
      rows: n,
      T,
      lengths: rows.map((r) => r.length),
      vocab: logitsTensor ? (logitsTensor.dims[2] as number) : info.vocabSize,
      logits: logitsTensor ? floatData(logitsTensor) : new Float32Array(0),
      hidden,
    };
  }

  private tensor(g: Graph, values: Float32Array, dims: number[]): ort.Tensor {
    if (!g.fp16) return new ort.Tensor("float32", values, dims);
    const half = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) half[i] = floatToHalfBits(values[i]!);
    return new ort.Tensor("float16", half, dims);
  }

  async release(): Promise<void> {
    const all = [...this.graphs.values()];
    this.graphs.clear();
    for (const g of all) await (await g).session.release();
  }
}

/** log-softmax of logits[offset .. offset + V) in float64. */
export function logSoftmax(logits: ArrayLike<number>, offset: number, V: number): Float64Array {
  let mx = -Infinity;
  for (let j = 0; j < V; j++) mx = Math.max(mx, logits[offset + j]!);
  let s = 0;
  for (let j = 0; j < V; j++) s += Math.exp(logits[offset + j]! - mx);
  const lse = mx + Math.log(s);
  const out = new Float64Array(V);
  for (let j = 0; j < V; j++) out[j] = logits[offset + j]! - lse;
  return out;
}

/**
 * KL(p || q) in nats between the next-token distributions of two logit vectors (p: the base model's,
 * q: the edited one's). Exactly 0 when the logits are identical (each term is p (lp - lq) with lp = lq).
 */
export function klDivergence(
  p: ArrayLike<number>,
  pOffset: number,
  q: ArrayLike<number>,
  qOffset: number,
  V: number,
): number {
  const lp = logSoftmax(p, pOffset, V);
  const lq = logSoftmax(q, qOffset, V);
  let kl = 0;
  for (let j = 0; j < V; j++) kl += Math.exp(lp[j]!) * (lp[j]! - lq[j]!);
  // Rounding can leave a tiny negative value for near-identical distributions; KL is >= 0.
  return Math.max(0, kl);
}

/** Indices grouped into batches of similar length (shortest first), so padding stays small. */
export function lengthBatches(rows: readonly number[][], batchSize: number): number[][] {
  const order = rows.map((_, i) => i).sort((a, b) => rows[a]!.length - rows[b]!.length || a - b);
  const out: number[][] = [];
  for (let s = 0; s < order.length; s += Math.max(1, batchSize)) out.push(order.slice(s, s + Math.max(1, batchSize)));
  return out;
}
