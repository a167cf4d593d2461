/**
 * Test data: valid delta files (safetensors bytes + manifest) from a seed, and raw safetensors
 * bytes from a hand-written header for crafting broken files. Runtime-neutral, so gateway tests
 * (workerd) can use it too.
 */
import { deltaTensorName, type DeltaLayer, type DeltaManifest } from "../src/protocol/delta.js";
import { decodeF16, encodeF16 } from "../src/protocol/half.js";
import { seededRandom } from "../src/gpu-backend/generation/sampler.js";
import type { Language } from "../src/protocol/languages.js";
import { serializeSafetensors, type TensorInput } from "../src/protocol/safetensors.js";

/** A well-formed fingerprint no real model has. */
export const TEST_FINGERPRINT = `sha256:${"ab".repeat(32)}`;

export interface MakeDeltaOptions {
  hiddenSize: number;
  layers: number[];
  rank: number;
  fingerprint?: string;
  dtype?: "float32" | "float16";
  id?: string;
  language?: Language;
  kind?: "subspace" | "adapter";
  seed?: number;
  /** All-zero A, B and b (the identity edit) instead of random values. */
  zero?: boolean;
  /** Random values are uniform in [-scale, scale]; default 0.05. */
  scale?: number;
  metrics?: Record<string, number>;
}

export interface MadeDelta {
  bytes: Uint8Array<ArrayBuffer>;
  manifest: DeltaManifest;
  /** The values as stored (after float16 rounding when dtype is float16), in float32. */
  layers: Map<number, DeltaLayer>;
}

export function makeDelta(o: MakeDeltaOptions): MadeDelta {
  const dtype = o.dtype ?? "float32";
  const rand = seededRandom(o.seed ?? 1);
  const scale = o.scale ?? 0.05;
  const fill = (n: number): Float32Array<ArrayBuffer> => {
    const a = new Float32Array(n);
    if (!o.zero) for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
    // Round through float16 so `layers` holds exactly what the file decodes to.
    return dtype === "float16" ? decodeF16(encodeF16(a)) : a;
  };
  const st = dtype === "float32" ? "F32" : "F16";
  const tensors = new Map<string, TensorInput>();
  const layers = new Map<number, DeltaLayer>();
  for (const l of o.layers) {
    const A = fill(o.hiddenSize * o.rank);
    const B = fill(o.rank * o.hiddenSize);
    const b = fill(o.hiddenSize);
    tensors.set(deltaTensorName(l, "A"), { dtype: st, shape: [o.hiddenSize, o.rank], data: A });
    tensors.set(deltaTensorName(l, "B"), { dtype: st, shape: [o.rank, o.hiddenSize], data: B });
    tensors.set(deltaTensorName(l, "b"), { dtype: st, shape: [o.hiddenSize], data: b });
    layers.set(l, { A, B, b, rank: o.rank });
  }
  const manifest: DeltaManifest = {
    id: o.id ?? `test-${o.language ?? "sw"}-${o.seed ?? 1}`,
    language: o.language ?? "sw",
    kind: o.kind ?? "adapter",
    layers: [...o.layers],
    rank: o.rank,
    hidden_size: o.hiddenSize,
    dtype,
    base_model: { id: "test-model", fingerprint: o.fingerprint ?? TEST_FINGERPRINT },
    created_at: "2025-01-01T00:00:00.000Z",
    method: { source: "test", seed: o.seed ?? 1, zero: o.zero ?? false },
    ...(o.metrics !== undefined ? { metrics: o.metrics } : {}),
  };
  return { bytes: serializeSafetensors(tensors), manifest, layers };
}

/**
 * safetensors bytes with exactly this header (no checks, no padding), followed by `data`; the
 * length field says `headerLength` when given. For files the writer would refuse to produce.
 */
export function rawSafetensors(
  header: Record<string, unknown> | string,
  data: Uint8Array = new Uint8Array(0),
  headerLength?: number,
): Uint8Array<ArrayBuffer> {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerLength ?? json.byteLength, true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}
