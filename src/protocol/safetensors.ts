/**
 * safetensors reading and writing with strict header checks, runtime-neutral (Uint8Array,
 * DataView and TextDecoder only) so the gateway (workerd) and the backend (Node) validate uploads
 * with the same code.
 *
 * Why not a package: the JS safetensors readers on npm either need Node's fs/Buffer, or parse the
 * header without the checks an upload path needs (offsets inside the file, no overlap, no gaps,
 * sizes matching shapes); none is maintained for workerd. The format is small enough to own:
 *
 *   [8 bytes: N, u64 little-endian][N bytes: JSON header, UTF-8, may be space-padded][data]
 *   header = { "__metadata__"?: { string: string }, name: { dtype, shape, data_offsets: [b, e] } }
 *   offsets are relative to the start of the data section.
 *
 * Only F32 and F16 are accepted: deltas are stored in one of those, and refusing the rest here
 * means a caller never sees a tensor it cannot decode.
 */
import { decodeF16, encodeF16 } from "./half.js";

type SafetensorsDtype = "F32" | "F16";

const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = { F32: 4, F16: 2 };

/** Headers of real delta files are a few KiB; a large N is a corrupt or hostile file. */
const DEFAULT_MAX_HEADER_BYTES = 1 << 20;

export type SafetensorsErrorCode = "bad_header" | "bad_dtype";

export class SafetensorsError extends Error {
  constructor(
    readonly code: SafetensorsErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "SafetensorsError";
  }
}

/** A tensor as found in a file; `data` is a view into the parsed bytes, not a copy. */
export interface TensorView {
  dtype: SafetensorsDtype;
  shape: number[];
  data: Uint8Array;
}

export interface ParsedSafetensors {
  tensors: Map<string, TensorView>;
  metadata: Record<string, string>;
}

const ENTRY_KEYS = new Set(["dtype", "shape", "data_offsets"]);

const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fail(code: SafetensorsErrorCode, message: string): never {
  throw new SafetensorsError(code, message);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Number of elements, or undefined when the product is not a safe integer. */
function elementCount(shape: readonly number[]): number | undefined {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return undefined;
  }
  return n;
}

/**
 * Parse and check a safetensors file. Throws SafetensorsError ("bad_header" or "bad_dtype") with a
 * message naming the offending tensor or field. The tensors cover the data section exactly.
 */
export function parseSafetensors(bytes: Uint8Array, options: { maxHeaderBytes?: number } = {}): ParsedSafetensors {
  const cap = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  if (bytes.byteLength < 8) {
    fail("bad_header", `file is ${bytes.byteLength} bytes, shorter than the 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  if (hi !== 0 || lo > cap) {
    const n = hi * 2 ** 32 + lo;
    fail("bad_header", `header length ${n} is over the ${cap}-byte limit`);
  }
  const headerLen = lo;
  if (8 + headerLen > bytes.byteLength) {
    fail("bad_header", `header length ${headerLen} runs past the end of the ${bytes.byteLength}-byte file`);
  }

  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    fail("bad_header", "header is not valid UTF-8");
  }
  if (!text.startsWith("{")) fail("bad_header", "header is not a JSON object");
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch {
    fail("bad_header", "header is not valid JSON");
  }
  if (!isPlainObject(header)) fail("bad_header", "header is not a JSON object");

  const dataStart = 8 + headerLen;
  const dataLen = bytes.byteLength - dataStart;
  const tensors = new Map<string, TensorView>();
  const metadata: Record<string, string> = {};
  const spans: Array<{ name: string; begin: number; end: number }> = [];

  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (!isPlainObject(entry)) fail("bad_header", "__metadata__ is not an object");
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== "string") fail("bad_header", `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (name.length === 0) fail("bad_header", "a tensor has an empty name");
    if (!isPlainObject(entry)) fail("bad_header", `tensor "${name}": entry is not an object`);
    for (const k of Object.keys(entry)) {
      if (!ENTRY_KEYS.has(k)) fail("bad_header", `tensor "${name}": unknown field "${k}"`);
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== "string") fail("bad_header", `tensor "${name}": dtype is not a string`);
    if (dtype !== "F32" && dtype !== "F16") {
      fail("bad_dtype", `tensor "${name}": dtype ${dtype} is not supported (F32 or F16 only)`);
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      fail("bad_header", `tensor "${name}": shape is not a list of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      fail("bad_header", `tensor "${name}": data_offsets is not [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLen) {
      fail("bad_header", `tensor "${name}": data_offsets [${begin}, ${end}] outside the ${dataLen}-byte data section`);
    }
    const count = elementCount(shape);
    const expected = count === undefined ? undefined : count * DTYPE_BYTES[dtype];
    if (expected !== end - begin) {
      fail(
        "bad_header",
        `tensor "${name}": ${end - begin} bytes for shape [${shape.join(", ")}] of ${dtype}, expected ${expected ?? "too many"}`,
      );
    }
    spans.push({ name, begin, end });
    tensors.set(name, { dtype, shape: [...shape], data: bytes.subarray(dataStart + begin, dataStart + end) });
  }

  // The tensors must tile the data section: no overlap (two names for the same bytes), no gap
  // and no trailing bytes (data nobody accounts for).
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const s of spans) {
    if (s.begin < cursor) fail("bad_header", `tensor "${s.name}" overlaps another tensor's data`);
    if (s.begin > cursor) fail("bad_header", `bytes ${cursor}..${s.begin} of the data section belong to no tensor`);
    cursor = s.end;
  }
  if (cursor !== dataLen) fail("bad_header", `bytes ${cursor}..${dataLen} of the data section belong to no tensor`);

  return { tensors, metadata };
}

/** A tensor's values as a new float32 array (F16 widened; any alignment, any host byte order). */
export function tensorToFloat32(t: TensorView): Float32Array<ArrayBuffer> {
  if (t.dtype === "F16") return decodeF16(t.data);
  const n = t.data.byteLength >>> 2;
  const out = new Float32Array(n);
  if (littleEndianHost) {
    new Uint8Array(out.buffer).set(t.data);
  } else {
    const v = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    for (let i = 0; i < n; i++) out[i] = v.getFloat32(4 * i, true);
  }
  return out;
}

export interface TensorInput {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  /** Float32Array: values, stored as `dtype` (rounded for F16). Uint8Array: raw little-endian bytes. */
  data: Float32Array | Uint8Array;
}

function tensorBytes(name: string, t: TensorInput): Uint8Array {
  const count = elementCount(t.shape);
  if (count === undefined) throw new Error(`tensor "${name}": shape too large`);
  let raw: Uint8Array;
  if (t.data instanceof Float32Array) {
    if (t.data.length !== count) throw new Error(`tensor "${name}": ${t.data.length} values for ${count} elements`);
    if (t.dtype === "F16") {
      raw = encodeF16(t.data);
    } else if (littleEndianHost) {
      raw = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    } else {
      raw = new Uint8Array(count * 4);
      const v = new DataView(raw.buffer);
      for (let i = 0; i < count; i++) v.setFloat32(4 * i, t.data[i]!, true);
    }
  } else {
    raw = t.data;
  }
  if (raw.byteLength !== count * DTYPE_BYTES[t.dtype]) {
    throw new Error(`tensor "${name}": ${raw.byteLength} bytes for ${count} ${t.dtype} elements`);
  }
  return raw;
}

/**
 * Write a safetensors file, tensors in the given order. The header is space-padded to a multiple
 * of 8 bytes (as the reference writer does) so the data section starts aligned.
 */
export function serializeSafetensors(
  tensors: Map<string, TensorInput> | Record<string, TensorInput>,
  metadata?: Record<string, string>,
): Uint8Array<ArrayBuffer> {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === "__metadata__" || name.length === 0) throw new Error(`invalid tensor name "${name}"`);
    const raw = tensorBytes(name, t);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + raw.byteLength] };
    chunks.push(raw);
    offset += raw.byteLength;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + padded + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, padded, true);
  view.setUint32(4, 0, true);
  out.set(json, 8);
  let at = 8 + padded;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
