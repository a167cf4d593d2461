/**
 * Helpers for the delta-hook tests: fp16 tensors, a seeded generator, one forward pass of a
 * model directory's graph (edited or not) with onnxruntime-node, and the delta computed independently.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import * as ort from "onnxruntime-node";
import type { ModelInfo } from "../../src/gpu-backend/model/model-dir.js";
import { seededRandom } from "../../src/gpu-backend/generation/sampler.js";
import { decodeF16, encodeF16, floatToHalfBits } from "../../src/protocol/half.js";

export type FloatKind = "float32" | "float16";

/** A tensor of the residual dtype from float values (rounded to fp16 where the model is fp16). */
function floatTensor(kind: FloatKind, values: ArrayLike<number>, dims: number[]): ort.Tensor {
  if (kind === "float32") return new ort.Tensor("float32", Float32Array.from(values), dims);
  return new ort.Tensor("float16", Uint16Array.from(Array.from(values, floatToHalfBits)), dims);
}

/** The float values of an output tensor, whatever its dtype. */
export function floatValues(t: ort.Tensor): Float64Array {
  if (t.type === "float32") return Float64Array.from(t.data as Float32Array);
  if (t.type === "float16") {
    const d = t.data as ArrayLike<number>;
    // onnxruntime-node returns fp16 as Uint16Array bits where Float16Array is missing (Node 20).
    return d instanceof Uint16Array
      ? Float64Array.from(decodeF16(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)))
      : Float64Array.from(d);
  }
  throw new Error(`expected a float tensor, got ${t.type}`);
}

/** Deterministic uniform values in [-1, 1): tests stay reproducible without hard-coded numbers. */
export function seeded(seed: number): () => number {
  const next = seededRandom(seed);
  return () => next() * 2 - 1;
}

export function readBytes(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}

/** Creates a session from (possibly edited) bytes, handing over the external data files the graph names. */
export async function sessionFromBytes(
  bytes: Uint8Array,
  modelPath: string,
  externalData: string[],
): Promise<ort.InferenceSession> {
  const dir = dirname(modelPath);
  const files = externalData.map((path) => {
    const full = join(dir, path);
    if (!existsSync(full)) throw new Error(`external data ${path} is missing beside the model`);
    return { path, data: readFileSync(full) };
  });
  return ort.InferenceSession.create(bytes, { externalData: files, intraOpNumThreads: 1, interOpNumThreads: 1 });
}

/** Feeds for a first call (empty KV cache): every row attends to all its tokens. */
export function firstCallFeeds(info: ModelInfo, kind: FloatKind, ids: number[][]): Record<string, ort.Tensor> {
  const B = ids.length;
  const T = ids[0]!.length;
  const flat = ids.flat();
  const feeds: Record<string, ort.Tensor> = {
    [info.io.inputIds]: new ort.Tensor("int64", BigInt64Array.from(flat, BigInt), [B, T]),
    [info.io.attentionMask]: new ort.Tensor("int64", new BigInt64Array(B * T).fill(1n), [B, T]),
  };
  if (info.io.positionIds) {
    feeds[info.io.positionIds] = new ort.Tensor(
      "int64",
      BigInt64Array.from({ length: B * T }, (_, i) => BigInt(i % T)),
      [B, T],
    );
  }
  for (let l = 0; l < info.numLayers; l++) {
    for (const name of [info.io.pastKey(l), info.io.pastValue(l)]) {
      feeds[name] = floatTensor(kind, [], [B, info.numKvHeads, 0, info.headSize]);
    }
  }
  return feeds;
}

export interface Delta {
  rank: number;
  /** Per row: A [hidden x rank], B [rank x hidden], bias [hidden], row-major, as the model's dtype will hold them. */
  a: Float64Array;
  b: Float64Array;
  bias: Float64Array;
}

/** Random per-row deltas; scaled to the hidden state's size so the edit is visible but not overflowing fp16. */
export function randomDelta(
  rand: () => number,
  batch: number,
  hidden: number,
  rank: number,
  scale: number,
  kind: FloatKind,
): Delta {
  const q = (x: number) => (kind === "float16" ? (decodeF16(encodeF16([x]))[0] as number) : Math.fround(x));
  const a = Float64Array.from({ length: batch * hidden * rank }, () => q(rand() / Math.sqrt(hidden)));
  const b = Float64Array.from({ length: batch * rank * hidden }, () => q(rand() / Math.sqrt(rank)));
  const bias = Float64Array.from({ length: batch * hidden }, () => q(rand() * scale));
  return { rank, a, b, bias };
}

export function zeroDelta(batch: number, hidden: number, rank: number): Delta {
  return {
    rank,
    a: new Float64Array(batch * hidden * rank),
    b: new Float64Array(batch * rank * hidden),
    bias: new Float64Array(batch * hidden),
  };
}

export function deltaFeeds(
  kind: FloatKind,
  names: { a: string; b: string; bias: string },
  d: Delta,
  batch: number,
  hidden: number,
): Record<string, ort.Tensor> {
  return {
    [names.a]: floatTensor(kind, d.a, [batch, hidden, d.rank]),
    [names.b]: floatTensor(kind, d.b, [batch, d.rank, hidden]),
    [names.bias]: floatTensor(kind, d.bias, [batch, hidden]),
  };
}

/** h + (h A) B + b for h [batch, seq, hidden], in float64: the reference the graph is checked against. */
export function applyDelta(h: Float64Array, d: Delta, batch: number, seq: number, hidden: number): Float64Array {
  const out = new Float64Array(h.length);
  const r = d.rank;
  const tmp = new Float64Array(r);
  for (let bi = 0; bi < batch; bi++) {
    for (let t = 0; t < seq; t++) {
      const off = (bi * seq + t) * hidden;
      tmp.fill(0);
      for (let i = 0; i < hidden; i++) {
        const hv = h[off + i]!;
        for (let j = 0; j < r; j++) tmp[j]! += hv * d.a[(bi * hidden + i) * r + j]!;
      }
      for (let o = 0; o < hidden; o++) {
        let v = h[off + o]! + d.bias[bi * hidden + o]!;
        for (let j = 0; j < r; j++) v += tmp[j]! * d.b[(bi * r + j) * hidden + o]!;
        out[off + o] = v;
      }
    }
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, from = 0, to = a.length): number {
  let m = 0;
  for (let i = from; i < to; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** Count of positions whose bit patterns differ (for fp32, exact equality of the raw data). */
export function bitDifferences(a: ort.Tensor, b: ort.Tensor): number {
  const x = a.data as ArrayLike<number>;
  const y = b.data as ArrayLike<number>;
  if (x.length !== y.length) return Math.max(x.length, y.length);
  if (a.type === "float32" && b.type === "float32") {
    const xi = new Uint32Array((x as Float32Array).buffer, (x as Float32Array).byteOffset, x.length);
    const yi = new Uint32Array((y as Float32Array).buffer, (y as Float32Array).byteOffset, y.length);
    let n = 0;
    for (let i = 0; i < xi.length; i++) if (xi[i] !== yi[i]) n++;
    return n;
  }
  let n = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) n++;
  return n;
}
