/**
 * Delta-hooked sessions: the model's graph with the hook h' = h + scale * ((h A) B + b) inserted
 * after the given layers, and the per-batch hook inputs. Rows without a delta, and rows whose delta
 * skips one of the hooked layers, get zeros there (rank 1), which leave the residual stream as it was.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { floatToHalfBits } from "../../protocol/half.js";
import type { HookedSession, HookedSessions, RowDelta } from "../generation/engine.js";
import { ModelRunner } from "../generation/model-runner.js";
import { insertDeltaHooks } from "../graph/delta-hooks.js";
import type { ModelInfo } from "../model/model-dir.js";

/** Sessions kept at once; each distinct set of edited layers in use needs one. */
const MAX_SESSIONS = 4;

export function hookedSessions(info: ModelInfo, options: ort.InferenceSession.SessionOptions): HookedSessions {
  const sessions = new Map<string, Promise<HookedSession>>();
  return {
    forLayers(layers) {
      const key = layers.join(",");
      let session = sessions.get(key);
      if (!session) {
        if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value as string);
        session = createHookedSession(info, options, layers);
        session.catch(() => sessions.delete(key));
        sessions.set(key, session);
      }
      return session;
    },
  };
}

export async function createHookedSession(
  info: ModelInfo,
  options: ort.InferenceSession.SessionOptions,
  layers: readonly number[] = Array.from({ length: info.numLayers }, (_, l) => l),
): Promise<HookedSession> {
  const graph = insertDeltaHooks(
    readFileSync(info.onnxPath),
    { deltaLayers: [...layers] },
    { numLayers: info.numLayers, hiddenSize: info.hiddenSize },
  );
  const externalData = graph.externalData.map((path) => ({ path, data: readFileSync(join(info.dir, path)) }));
  const session = await ort.InferenceSession.create(graph.bytes, {
    ...options,
    ...(externalData.length ? { externalData } : {}),
  });
  const runner = new ModelRunner(info, session, ModelRunner.kvIsFp16(session, info));
  const fp16 = graph.dtype === "float16";
  const d = info.hiddenSize;

  let lastKey = "";
  let lastFeeds: Record<string, ort.Tensor> = {};
  function feeds(deltas: ReadonlyArray<RowDelta | null>): Record<string, ort.Tensor> {
    // A batch keeps its rows for many steps: build the inputs once per composition.
    const key = deltas.map((x) => (x ? `${x.id}*${x.scale}` : "-")).join("|");
    if (key === lastKey) return lastFeeds;
    const rows = deltas.length;
    const out: Record<string, ort.Tensor> = {};
    for (const input of graph.deltaInputs) {
      const rank = Math.max(1, ...deltas.map((x) => x?.layers.get(input.layer)?.rank ?? 0));
      const A = new Float32Array(rows * d * rank);
      const B = new Float32Array(rows * rank * d);
      const bias = new Float32Array(rows * d);
      deltas.forEach((x, r) => {
        const layer = x?.layers.get(input.layer);
        if (!x || !layer) return;
        for (let i = 0; i < d; i++) {
          for (let j = 0; j < layer.rank; j++) A[(r * d + i) * rank + j] = layer.A[i * layer.rank + j] as number;
        }
        for (let j = 0; j < layer.rank; j++) {
          for (let i = 0; i < d; i++) B[(r * rank + j) * d + i] = (layer.B[j * d + i] as number) * x.scale;
        }
        for (let i = 0; i < d; i++) bias[r * d + i] = (layer.b[i] as number) * x.scale;
      });
      out[input.a] = tensor(A, [rows, d, rank]);
      out[input.b] = tensor(B, [rows, rank, d]);
      out[input.bias] = tensor(bias, [rows, d]);
    }
    lastKey = key;
    lastFeeds = out;
    return out;
  }

  function tensor(values: Float32Array, dims: number[]): ort.Tensor {
    if (!fp16) return new ort.Tensor("float32", values, dims);
    const half = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) half[i] = floatToHalfBits(values[i] as number);
    return new ort.Tensor("float16", half, dims);
  }

  return { runner, feeds };
}
