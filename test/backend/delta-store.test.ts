/**
 * The delta file format (safetensors + manifest), validateDelta's error codes, the backend's
 * delta store (all-or-nothing puts, LRU on decoded bytes) and its HTTP routes.
 */
import { describe, expect, it } from "vitest";
import { deltaRoutes } from "../../src/gpu-backend/deltas/routes.js";
import { DeltaStore } from "../../src/gpu-backend/deltas/store.js";
import {
  decodedDeltaBytes,
  DeltaErrorBody,
  DeltaManifest,
  type DeltaValidationCode,
  validateDelta,
} from "../../src/protocol/delta.js";
import { decodeF16, encodeF16, floatToHalfBits } from "../../src/protocol/half.js";
import {
  parseSafetensors,
  serializeSafetensors,
  tensorToFloat32,
  type TensorInput,
} from "../../src/protocol/safetensors.js";
import { makeDelta, type MadeDelta, rawSafetensors, TEST_FINGERPRINT } from "../../dev/make-delta.js";

const HIDDEN = 8;
const RANK = 2;
const NUM_LAYERS = 4;
const MAX_FILE = 2000;
const EXPECT = { fingerprint: TEST_FINGERPRINT, hiddenSize: HIDDEN, numLayers: NUM_LAYERS, maxBytes: MAX_FILE };
/** Decoded size of a two-layer delta at these dims: 2 * (2*8*2 + 8) * 4. */
const TWO_LAYER_BYTES = 320;

function made(over: Partial<Parameters<typeof makeDelta>[0]> = {}): MadeDelta {
  return makeDelta({ hiddenSize: HIDDEN, rank: RANK, layers: [1, 2], id: "sw-1", seed: 7, ...over });
}

function clock(): () => number {
  let t = Date.UTC(2025, 0, 1);
  return () => (t += 1000);
}

function newStore(maxDecodedBytes = 10_000): DeltaStore {
  return new DeltaStore({ ...EXPECT, maxDecodedBytes, now: clock() });
}

/** The tensors of a made delta as writer input, to edit before re-serializing. */
function tensorsOf(d: MadeDelta): Map<string, TensorInput> {
  const dtype = d.manifest.dtype === "float32" ? "F32" : "F16";
  const m = new Map<string, TensorInput>();
  for (const [l, { A, B, b }] of d.layers) {
    m.set(`layers.${l}.A`, { dtype, shape: [HIDDEN, RANK], data: Float32Array.from(A) });
    m.set(`layers.${l}.B`, { dtype, shape: [RANK, HIDDEN], data: Float32Array.from(B) });
    m.set(`layers.${l}.b`, { dtype, shape: [HIDDEN], data: Float32Array.from(b) });
  }
  return m;
}

/** Re-emit a file with its JSON header edited and its data section untouched. */
// biome-ignore lint/suspicious/noExplicitAny: the test breaks headers in every way; their shape is anything.
type AnyHeader = Record<string, any>;

function editHeader(bytes: Uint8Array, edit: (h: AnyHeader) => void, data?: Uint8Array): Uint8Array<ArrayBuffer> {
  const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as AnyHeader;
  edit(header);
  return rawSafetensors(header, data ?? bytes.subarray(8 + n));
}

function withValue(d: MadeDelta, name: string, index: number, value: number): Uint8Array<ArrayBuffer> {
  const t = tensorsOf(d);
  (t.get(name)!.data as Float32Array)[index] = value;
  return serializeSafetensors(t);
}

describe("safetensors", () => {
  it("round-trips F32 and F16 tensors and metadata, data section 8-byte aligned", () => {
    const a = Float32Array.from([1.5, -2, 0, 3.25, 1e-3, -7]);
    const h = Float32Array.from([0.5, -1, 2, 65504]);
    const bytes = serializeSafetensors(
      {
        a: { dtype: "F32", shape: [2, 3], data: a },
        h: { dtype: "F16", shape: [4], data: h },
        e: { dtype: "F32", shape: [0, 5], data: new Float32Array(0) },
      },
      { note: "hi" },
    );
    const headerLen = new DataView(bytes.buffer).getUint32(0, true);
    expect(headerLen % 8).toBe(0);
    expect(bytes.byteLength).toBe(8 + headerLen + 6 * 4 + 4 * 2);
    const parsed = parseSafetensors(bytes);
    expect(parsed.metadata).toEqual({ note: "hi" });
    expect([...parsed.tensors.keys()].sort()).toEqual(["a", "e", "h"]);
    expect(parsed.tensors.get("a")).toMatchObject({ dtype: "F32", shape: [2, 3] });
    expect(parsed.tensors.get("h")).toMatchObject({ dtype: "F16", shape: [4] });
    expect(parsed.tensors.get("e")).toMatchObject({ dtype: "F32", shape: [0, 5] });
    expect(tensorToFloat32(parsed.tensors.get("a")!)).toEqual(a);
    expect(tensorToFloat32(parsed.tensors.get("h")!)).toEqual(h);
  });

  it("decodes F16 bit patterns to the right F32 values, at any alignment", () => {
    const bits = [0x3c00, 0xc000, 0x3555, 0x0001, 0x7bff, 0x8000, 0x0000, 0x3800, 0x03ff];
    const want = [1, -2, 0.333251953125, 2 ** -24, 65504, -0, 0, 0.5, 1023 * 2 ** -24];
    const raw = new Uint8Array(bits.length * 2);
    bits.forEach((b, i) => {
      raw[2 * i] = b & 0xff;
      raw[2 * i + 1] = b >> 8;
    });
    // A header of odd length puts the data at an odd offset.
    const header = { x: { dtype: "F16", shape: [bits.length], data_offsets: [0, raw.byteLength] } };
    let file = rawSafetensors(header, raw);
    if ((new DataView(file.buffer).getUint32(0, true) & 1) === 0)
      file = rawSafetensors(`${JSON.stringify(header)} `, raw);
    expect(new DataView(file.buffer).getUint32(0, true) & 1).toBe(1);
    const got = Array.from(tensorToFloat32(parseSafetensors(file).tensors.get("x")!));
    expect(got).toEqual(want);
    expect(Object.is(got[5], -0)).toBe(true);
    // The encoder is the inverse on these, and rounds to nearest even.
    expect(want.map(floatToHalfBits)).toEqual(bits);
    expect(floatToHalfBits(1 + 2 ** -11)).toBe(0x3c00);
    expect(floatToHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(floatToHalfBits(70000)).toBe(0x7c00);
    expect(floatToHalfBits(2 ** -26)).toBe(0);
    expect(Number.isNaN(decodeF16(encodeF16([NaN]))[0])).toBe(true);
  });
});

describe("validateDelta", () => {
  it("decodes a float32 delta to exactly its values", () => {
    const d = made();
    const r = validateDelta(d.bytes, d.manifest, EXPECT);
    if (!r.ok) throw new Error(r.error.message);
    expect([...r.delta.layers.keys()]).toEqual([1, 2]);
    for (const l of [1, 2]) {
      const got = r.delta.layers.get(l)!;
      expect(got.rank).toBe(RANK);
      expect(got.A).toEqual(d.layers.get(l)!.A);
      expect(got.B).toEqual(d.layers.get(l)!.B);
      expect(got.b).toEqual(d.layers.get(l)!.b);
      expect(got.A.some((v) => v !== 0)).toBe(true);
    }
    expect(r.delta.manifest).toEqual(d.manifest);
  });

  it("decodes a float16 delta to the right float32 values", () => {
    const d = made({ dtype: "float16" });
    const f32 = made({ dtype: "float32" });
    expect(d.bytes.byteLength).toBeLessThan(f32.bytes.byteLength);
    const r = validateDelta(d.bytes, d.manifest, EXPECT);
    if (!r.ok) throw new Error(r.error.message);
    const A = r.delta.layers.get(2)!.A;
    expect(A).toBeInstanceOf(Float32Array);
    expect(A).toEqual(d.layers.get(2)!.A);
    // Same seed: within float16 precision of the float32 values, but rounded.
    const ref = f32.layers.get(2)!.A;
    for (let i = 0; i < A.length; i++)
      expect(Math.abs(A[i]! - ref[i]!)).toBeLessThanOrEqual(Math.abs(ref[i]!) * 2 ** -11 + 2 ** -25);
    expect(A).not.toEqual(ref);
  });

  it("accepts a zero delta and decodes it to zeros", () => {
    const d = made({ zero: true });
    const r = validateDelta(d.bytes, d.manifest, EXPECT);
    if (!r.ok) throw new Error(r.error.message);
    for (const layer of r.delta.layers.values()) {
      expect([...layer.A, ...layer.B, ...layer.b].every((v) => v === 0)).toBe(true);
    }
  });
});

/** Each crafted file: the code it must be refused with. `manifest` defaults to the good one's. */
interface BadCase {
  name: string;
  code: DeltaValidationCode;
  bytes: () => Uint8Array;
  manifest?: () => unknown;
  message?: RegExp;
}

const good = made();
const goodHeaderLen = new DataView(good.bytes.buffer).getUint32(0, true);
const goodData = good.bytes.subarray(8 + goodHeaderLen);

const BAD: BadCase[] = [
  {
    name: "file over the size cap",
    code: "too_large",
    bytes: () => serializeSafetensors(tensorsOf(good), { pad: "x".repeat(MAX_FILE) }),
  },
  {
    name: "truncated file",
    code: "bad_header",
    bytes: () => good.bytes.slice(0, good.bytes.byteLength - 10),
    message: /outside the/,
  },
  { name: "shorter than 8 bytes", code: "bad_header", bytes: () => good.bytes.slice(0, 5) },
  {
    name: "header length past the end",
    code: "bad_header",
    bytes: () => rawSafetensors({}, new Uint8Array(0), 10_000),
    message: /past the end/,
  },
  {
    name: "header length over the cap (high word set)",
    code: "bad_header",
    bytes: () => {
      const b = good.bytes.slice();
      new DataView(b.buffer).setUint32(4, 1, true);
      return b;
    },
    message: /limit/,
  },
  { name: "header not JSON", code: "bad_header", bytes: () => rawSafetensors("{not json", goodData), message: /JSON/ },
  { name: "header a JSON array", code: "bad_header", bytes: () => rawSafetensors("[1, 2]") },
  {
    name: "header not UTF-8",
    code: "bad_header",
    bytes: () => {
      const b = rawSafetensors('{"a":{}}');
      b[10] = 0xff; // the "a"
      return b;
    },
    message: /UTF-8/,
  },
  {
    name: "overlapping offsets",
    code: "bad_header",
    bytes: () => editHeader(good.bytes, (h) => (h["layers.1.B"].data_offsets = [...h["layers.1.A"].data_offsets])),
    message: /overlaps/,
  },
  {
    name: "trailing bytes nobody owns",
    code: "bad_header",
    bytes: () => editHeader(good.bytes, () => {}, new Uint8Array([...goodData, 0, 0, 0, 0])),
    message: /belong to no tensor/,
  },
  {
    name: "size not matching the shape",
    code: "bad_header",
    bytes: () => editHeader(good.bytes, (h) => (h["layers.1.b"].shape = [HIDDEN + 1])),
  },
  {
    name: "negative shape",
    code: "bad_header",
    bytes: () => editHeader(good.bytes, (h) => (h["layers.1.b"].shape = [-8])),
  },
  {
    name: "unknown entry field",
    code: "bad_header",
    bytes: () => editHeader(good.bytes, (h) => (h["layers.1.b"].extra = 1)),
  },
  {
    name: "metadata value not a string",
    code: "bad_header",
    bytes: () => editHeader(good.bytes, (h) => (h.__metadata__ = { a: 1 })),
  },
  {
    name: "I32 tensor",
    code: "bad_dtype",
    bytes: () => editHeader(good.bytes, (h) => (h["layers.2.A"].dtype = "I32")),
    message: /I32/,
  },
  {
    name: "BF16 tensor",
    code: "bad_dtype",
    bytes: () => {
      const f16 = made({ dtype: "float16" });
      return editHeader(f16.bytes, (h) => (h["layers.1.B"].dtype = "BF16"));
    },
    manifest: () => made({ dtype: "float16" }).manifest,
    message: /BF16/,
  },
  {
    name: "F16 file, manifest says float32",
    code: "bad_dtype",
    bytes: () => made({ dtype: "float16" }).bytes,
    message: /float32/,
  },
  {
    name: "transposed A",
    code: "bad_shape",
    bytes: () => editHeader(good.bytes, (h) => (h["layers.1.A"].shape = [RANK, HIDDEN])),
    message: /layers\.1\.A/,
  },
  {
    name: "hidden size of another model",
    code: "bad_shape",
    bytes: () => makeDelta({ hiddenSize: 16, rank: RANK, layers: [1, 2], id: "sw-1" }).bytes,
    manifest: () => makeDelta({ hiddenSize: 16, rank: RANK, layers: [1, 2], id: "sw-1" }).manifest,
  },
  {
    name: "rank differs from the manifest",
    code: "bad_shape",
    bytes: () => made({ rank: 3 }).bytes,
  },
  {
    name: "NaN",
    code: "non_finite",
    bytes: () => withValue(good, "layers.2.B", 5, NaN),
    message: /layers\.2\.B.*element 5/,
  },
  { name: "+Infinity", code: "non_finite", bytes: () => withValue(good, "layers.1.b", 0, Infinity) },
  { name: "-Infinity", code: "non_finite", bytes: () => withValue(good, "layers.1.A", 15, -Infinity) },
  {
    name: "float16 Infinity",
    code: "non_finite",
    bytes: () => {
      const f16 = made({ dtype: "float16" });
      const t = tensorsOf(f16);
      (t.get("layers.2.b")!.data as Float32Array)[3] = 1e6; // overflows float16 to Infinity
      return serializeSafetensors(t);
    },
    manifest: () => made({ dtype: "float16" }).manifest,
  },
  {
    name: "another model's fingerprint",
    code: "fingerprint_mismatch",
    bytes: () => good.bytes,
    manifest: () => ({ ...good.manifest, base_model: { id: "other", fingerprint: `sha256:${"cd".repeat(32)}` } }),
  },
  {
    name: "extra tensor",
    code: "unexpected_tensor",
    bytes: () =>
      editHeader(good.bytes, (h) => (h["lm_head.weight"] = { dtype: "F32", shape: [0], data_offsets: [0, 0] })),
    message: /lm_head\.weight/,
  },
  {
    name: "tensor of a layer the manifest does not list",
    code: "unexpected_tensor",
    bytes: () => made({ layers: [1, 2, 3] }).bytes,
  },
  {
    name: "missing tensor",
    code: "missing_tensor",
    bytes: () => {
      const t = tensorsOf(good);
      t.delete("layers.2.b");
      return serializeSafetensors(t);
    },
    message: /layers\.2\.b/,
  },
  {
    name: "layer out of range",
    code: "layer_out_of_range",
    bytes: () => made({ layers: [1, NUM_LAYERS] }).bytes,
    manifest: () => made({ layers: [1, NUM_LAYERS] }).manifest,
    message: new RegExp(`layer ${NUM_LAYERS}`),
  },
  {
    name: "manifest: bad id",
    code: "manifest_invalid",
    bytes: () => good.bytes,
    manifest: () => ({ ...good.manifest, id: "sw/1" }),
  },
  {
    name: "manifest: unknown language",
    code: "manifest_invalid",
    bytes: () => good.bytes,
    manifest: () => ({ ...good.manifest, language: "xx" }),
  },
  {
    name: "manifest: repeated layers",
    code: "manifest_invalid",
    bytes: () => good.bytes,
    manifest: () => ({ ...good.manifest, layers: [1, 1] }),
  },
  {
    name: "manifest: empty layers",
    code: "manifest_invalid",
    bytes: () => good.bytes,
    manifest: () => ({ ...good.manifest, layers: [] }),
  },
  {
    name: "manifest: rank 0",
    code: "manifest_invalid",
    bytes: () => good.bytes,
    manifest: () => ({ ...good.manifest, rank: 0 }),
  },
  {
    name: "manifest: fingerprint not sha256 hex",
    code: "manifest_invalid",
    bytes: () => good.bytes,
    manifest: () => ({ ...good.manifest, base_model: { id: "m", fingerprint: TEST_FINGERPRINT.toUpperCase() } }),
  },
  {
    name: "manifest: created_at not ISO",
    code: "manifest_invalid",
    bytes: () => good.bytes,
    manifest: () => ({ ...good.manifest, created_at: "yesterday" }),
  },
  {
    name: "manifest: unknown field",
    code: "manifest_invalid",
    bytes: () => good.bytes,
    manifest: () => ({ ...good.manifest, hiddenSize: 8 }),
    message: /hiddenSize/,
  },
  { name: "manifest: not an object", code: "manifest_invalid", bytes: () => good.bytes, manifest: () => "sw-1" },
];

describe("every bad file is refused with its code, and the store is left as it was", () => {
  it("the reference file is valid", () => {
    expect(validateDelta(good.bytes, good.manifest, EXPECT).ok).toBe(true);
  });

  it.each(BAD.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const bytes = c.bytes();
    const manifest = c.manifest ? c.manifest() : good.manifest;
    const r = validateDelta(bytes, manifest, EXPECT);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe(c.code);
    expect(r.error.message.length).toBeGreaterThan(0);
    if (c.message) expect(r.error.message).toMatch(c.message);

    // A store already holding "sw-1" (a different delta) and one other id.
    const store = newStore();
    const old = made({ seed: 99 });
    const other = made({ id: "fr-1", language: "fr", seed: 3 });
    expect(store.put(old.bytes, old.manifest).ok).toBe(true);
    expect(store.put(other.bytes, other.manifest).ok).toBe(true);
    const before = structuredClone(store.list());
    const order = store.lruOrder();
    const total = store.decodedBytes;

    const p = store.put(bytes, manifest);
    expect(p.ok ? "accepted" : p.error.code).toBe(c.code);
    expect(store.list()).toEqual(before);
    expect(store.lruOrder()).toEqual(order);
    expect(store.decodedBytes).toBe(total);
    expect(store.get("sw-1")!.layers.get(1)!.A).toEqual(old.layers.get(1)!.A);
  });
});

describe("DeltaStore", () => {
  it("puts, gets, lists and deletes", () => {
    const store = newStore();
    const d = made();
    const r = store.put(d.bytes, d.manifest);
    expect(r).toEqual({ ok: true, manifest: d.manifest, replaced: false, evicted: [] });
    expect(store.has("sw-1")).toBe(true);
    expect(store.has("fr-1")).toBe(false);
    expect(store.get("sw-1")!.layers.get(2)!.B).toEqual(d.layers.get(2)!.B);
    const [entry, ...rest] = store.list();
    expect(rest).toEqual([]);
    expect(entry).toEqual({
      manifest: d.manifest,
      file_bytes: d.bytes.byteLength,
      decoded_bytes: TWO_LAYER_BYTES,
      last_used_at: new Date(Date.UTC(2025, 0, 1) + 2000).toISOString(),
    });
    expect(store.decodedBytes).toBe(TWO_LAYER_BYTES);
    expect(store.delete("sw-1")).toBe(true);
    expect(store.delete("sw-1")).toBe(false);
    expect(store.get("sw-1")).toBeUndefined();
    expect(store.list()).toEqual([]);
    expect(store.decodedBytes).toBe(0);
  });

  it("replaces an id with a good file", () => {
    const store = newStore();
    const a = made({ seed: 1 });
    const b = made({ seed: 2 });
    store.put(a.bytes, a.manifest);
    const r = store.put(b.bytes, b.manifest);
    expect(r.ok && r.replaced).toBe(true);
    expect(store.get("sw-1")!.layers.get(1)!.A).toEqual(b.layers.get(1)!.A);
    expect(store.size).toBe(1);
    expect(store.decodedBytes).toBe(TWO_LAYER_BYTES);
  });

  it("evicts the least recently used when over its bound; has and list do not count as use", () => {
    expect(decodedDeltaBytes(made().manifest)).toBe(TWO_LAYER_BYTES);
    const store = new DeltaStore({ ...EXPECT, maxDecodedBytes: 3 * TWO_LAYER_BYTES, now: clock() });
    const put = (id: string, layers = [1, 2]) => {
      const d = made({ id, layers });
      const r = store.put(d.bytes, d.manifest);
      if (!r.ok) throw new Error(r.error.message);
      return r.evicted;
    };
    expect(put("a")).toEqual([]);
    expect(put("b")).toEqual([]);
    expect(put("c")).toEqual([]);
    expect(store.get("a")).toBeDefined();
    expect(store.has("b")).toBe(true);
    store.list();
    expect(store.lruOrder()).toEqual(["b", "c", "a"]);
    expect(put("d")).toEqual(["b"]);
    expect(store.lruOrder()).toEqual(["c", "a", "d"]);
    // Replacing a held id frees its old size first: nothing else goes.
    expect(put("c")).toEqual([]);
    expect(store.lruOrder()).toEqual(["a", "d", "c"]);
    // A four-layer delta needs two slots.
    expect(put("e", [0, 1, 2, 3])).toEqual(["a", "d"]);
    expect(store.list().map((e) => e.manifest.id)).toEqual(["c", "e"]);
    expect(store.decodedBytes).toBe(3 * TWO_LAYER_BYTES);
  });

  it("refuses a delta bigger than the whole bound with too_large and keeps everything", () => {
    const store = new DeltaStore({ ...EXPECT, maxDecodedBytes: TWO_LAYER_BYTES + 1, now: clock() });
    const small = made({ id: "small" });
    expect(store.put(small.bytes, small.manifest).ok).toBe(true);
    const big = made({ id: "big", layers: [0, 1, 2], dtype: "float16" });
    expect(big.bytes.byteLength).toBeLessThan(MAX_FILE);
    const before = store.list();
    const r = store.put(big.bytes, big.manifest);
    expect(r.ok ? "accepted" : r.error.code).toBe("too_large");
    expect(store.list()).toEqual(before);
  });

  it("accepts a delta exactly the size of the bound", () => {
    const store = new DeltaStore({ ...EXPECT, maxDecodedBytes: TWO_LAYER_BYTES, now: clock() });
    const d = made();
    expect(store.put(d.bytes, d.manifest).ok).toBe(true);
  });
});

describe("routes", () => {
  function form(d: { bytes: Uint8Array<ArrayBuffer>; manifest: unknown }, manifestText?: string): FormData {
    const f = new FormData();
    f.set("manifest", manifestText ?? JSON.stringify(d.manifest));
    f.set("tensors", new Blob([d.bytes], { type: "application/octet-stream" }), "delta.safetensors");
    return f;
  }

  async function errorOf(res: Response): Promise<string> {
    const body = DeltaErrorBody.parse(await res.json());
    return body.error.code;
  }

  it("PUT, GET, list, DELETE", async () => {
    const store = newStore();
    const app = deltaRoutes(store);
    const d = made();
    const put = await app.request("/sw-1", { method: "PUT", body: form(d) });
    expect(put.status).toBe(201);
    expect(DeltaManifest.parse(await put.json())).toEqual(d.manifest);
    expect(store.has("sw-1")).toBe(true);

    const one = await app.request("/sw-1");
    expect(one.status).toBe(200);
    expect(await one.json()).toEqual(d.manifest);

    const list = await app.request("/");
    expect(list.status).toBe(200);
    expect(await list.json()).toEqual({
      deltas: store.list(),
      decoded_bytes: TWO_LAYER_BYTES,
      max_decoded_bytes: 10_000,
    });

    const del = await app.request("/sw-1", { method: "DELETE" });
    expect(del.status).toBe(204);
    expect(store.has("sw-1")).toBe(false);
    const again = await app.request("/sw-1", { method: "DELETE" });
    expect(again.status).toBe(404);
    expect(await errorOf(again)).toBe("not_found");
    const gone = await app.request("/sw-1");
    expect(gone.status).toBe(404);
  });

  it("refuses bad uploads with the right status and code, keeping the old delta", async () => {
    const store = newStore();
    const app = deltaRoutes(store);
    const old = made({ seed: 99 });
    expect((await app.request("/sw-1", { method: "PUT", body: form(old) })).status).toBe(201);
    const before = structuredClone(store.list());

    const cases: Array<[string, RequestInit, number, string]> = [
      ["mismatched id", { method: "PUT", body: form(made({ id: "sw-2" })) }, 400, "id_mismatch"],
      [
        "NaN in the file",
        { method: "PUT", body: form({ bytes: withValue(made(), "layers.1.A", 0, NaN), manifest: good.manifest }) },
        400,
        "non_finite",
      ],
      [
        "truncated file",
        { method: "PUT", body: form({ bytes: good.bytes.slice(0, 100), manifest: good.manifest }) },
        400,
        "bad_header",
      ],
      [
        "another model",
        {
          method: "PUT",
          body: form({
            bytes: good.bytes,
            manifest: { ...good.manifest, base_model: { id: "x", fingerprint: `sha256:${"0".repeat(64)}` } },
          }),
        },
        409,
        "fingerprint_mismatch",
      ],
      [
        "file over the cap",
        {
          method: "PUT",
          body: form({
            bytes: serializeSafetensors(tensorsOf(good), { pad: "x".repeat(MAX_FILE) }),
            manifest: good.manifest,
          }),
        },
        413,
        "too_large",
      ],
      [
        "body over the limit",
        { method: "PUT", body: form({ bytes: new Uint8Array(MAX_FILE + (1 << 20) + 10), manifest: good.manifest }) },
        413,
        "too_large",
      ],
      ["manifest not JSON", { method: "PUT", body: form(good, "{") }, 400, "manifest_invalid"],
      [
        "manifest invalid",
        { method: "PUT", body: form({ bytes: good.bytes, manifest: { ...good.manifest, rank: -1 } }) },
        400,
        "manifest_invalid",
      ],
      [
        "not multipart",
        { method: "PUT", body: JSON.stringify(good.manifest), headers: { "content-type": "application/json" } },
        400,
        "bad_request",
      ],
    ];
    const missing = new FormData();
    missing.set("manifest", JSON.stringify(good.manifest));
    cases.push(["no tensors field", { method: "PUT", body: missing }, 400, "bad_request"]);

    for (const [name, init, status, code] of cases) {
      const res = await app.request("/sw-1", init);
      expect([name, res.status, await errorOf(res)]).toEqual([name, status, code]);
      expect(store.list()).toEqual(before);
    }
    expect(store.get("sw-1")!.layers.get(2)!.b).toEqual(old.layers.get(2)!.b);
  });

  it("refuses an invalid id in the path", async () => {
    const app = deltaRoutes(newStore());
    const res = await app.request(`/${"x".repeat(129)}`, { method: "PUT", body: form(good) });
    expect(res.status).toBe(400);
    expect(await errorOf(res)).toBe("bad_request");
  });
});
