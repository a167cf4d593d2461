/**
 * The inputs of one forward pass over several prompts from an empty cache: rows left-padded to
 * the longest (masked out, position ids counting real tokens only), and zero-length past tensors.
 */
import * as ort from "onnxruntime-node";
import type { ModelInfo } from "../model/model-dir.js";

export function leftPaddedFeeds(
  info: ModelInfo,
  inputNames: readonly string[],
  rows: readonly number[][],
  kvFp16: boolean,
): Record<string, ort.Tensor> {
  const n = rows.length;
  const T = Math.max(...rows.map((r) => r.length));
  const ids = new BigInt64Array(n * T);
  const mask = new BigInt64Array(n * T);
  const positions = new BigInt64Array(n * T);
  const pad = BigInt(info.padTokenId ?? info.eosTokenIds[0] ?? 0);
  rows.forEach((row, r) => {
    const offset = T - row.length;
    for (let t = 0; t < T; t++) {
      const real = t >= offset;
      ids[r * T + t] = real ? BigInt(row[t - offset]!) : pad;
      mask[r * T + t] = real ? 1n : 0n;
      positions[r * T + t] = real ? BigInt(t - offset) : 0n;
    }
  });
  const feeds: Record<string, ort.Tensor> = {
    [info.io.inputIds]: new ort.Tensor("int64", ids, [n, T]),
    [info.io.attentionMask]: new ort.Tensor("int64", mask, [n, T]),
  };
  if (info.io.positionIds && inputNames.includes(info.io.positionIds)) {
    feeds[info.io.positionIds] = new ort.Tensor("int64", positions, [n, T]);
  }
  const kvDims = [n, info.numKvHeads, 0, info.headSize];
  for (let l = 0; l < info.numLayers; l++) {
    for (const name of [info.io.pastKey(l), info.io.pastValue(l)]) {
      feeds[name] = kvFp16
        ? new ort.Tensor("float16", new Uint16Array(0), kvDims)
        : new ort.Tensor("float32", new Float32Array(0), kvDims);
    }
  }
  return feeds;
}
