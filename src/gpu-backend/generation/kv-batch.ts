/**
 * The key/value cache of a batch of rows, as the model takes it: per layer one tensor
 * [rows, kvHeads, length, headSize], rows left-padded to a common length, with an attention mask
 * [rows, length] that marks the real positions. Decoding reuses the model's `present` outputs as
 * the next step's past as they are; only a change of rows (join, leave) copies.
 */
export type KvArray = Float32Array | Uint16Array;

export interface KvBatch {
  rows: number;
  length: number;
  keys: KvArray[];
  values: KvArray[];
  /** 1 where a row has a real position, 0 for left padding; [rows * length]. */
  mask: Uint8Array;
}

export interface KvShape {
  layers: number;
  kvHeads: number;
  headSize: number;
  fp16: boolean;
}

function alloc(shape: KvShape, n: number): KvArray {
  return shape.fp16 ? new Uint16Array(n) : new Float32Array(n);
}

export function emptyKv(shape: KvShape, rows: number): KvBatch {
  return {
    rows,
    length: 0,
    keys: Array.from({ length: shape.layers }, () => alloc(shape, 0)),
    values: Array.from({ length: shape.layers }, () => alloc(shape, 0)),
    mask: new Uint8Array(0),
  };
}

/** Copies rows of `src` (in the given order) into a batch of `length` columns, left-padded. */
function gather(shape: KvShape, parts: Array<{ kv: KvBatch; row: number }>, length: number): KvBatch {
  const { kvHeads, headSize } = shape;
  const rows = parts.length;
  const out: KvBatch = {
    rows,
    length,
    keys: [],
    values: [],
    mask: new Uint8Array(rows * length),
  };
  for (let l = 0; l < shape.layers; l++) {
    const k = alloc(shape, rows * kvHeads * length * headSize);
    const v = alloc(shape, rows * kvHeads * length * headSize);
    parts.forEach(({ kv, row }, r) => {
      const pad = length - kv.length;
      const srcK = kv.keys[l] as KvArray;
      const srcV = kv.values[l] as KvArray;
      for (let h = 0; h < kvHeads; h++) {
        const from = (row * kvHeads + h) * kv.length * headSize;
        const to = ((r * kvHeads + h) * length + pad) * headSize;
        k.set(srcK.subarray(from, from + kv.length * headSize), to);
        v.set(srcV.subarray(from, from + kv.length * headSize), to);
      }
    });
    out.keys.push(k);
    out.values.push(v);
  }
  parts.forEach(({ kv, row }, r) => {
    const pad = length - kv.length;
    out.mask.set(kv.mask.subarray(row * kv.length, (row + 1) * kv.length), r * length + pad);
  });
  return out;
}

/** Leading columns that are padding in every row: dropped to keep the batch short. */
function leadingPadding(kv: KvBatch, rows: number[]): number {
  let n = 0;
  outer: for (; n < kv.length; n++) {
    for (const r of rows) if (kv.mask[r * kv.length + n]) break outer;
  }
  return n;
}

/** The batch with only `keep` rows (indices into `kv`), shortened by shared leading padding. */
export function selectRows(shape: KvShape, kv: KvBatch, keep: number[]): KvBatch {
  if (keep.length === kv.rows && keep.every((r, i) => r === i)) return kv;
  const trim = keep.length ? leadingPadding(kv, keep) : kv.length;
  const trimmed = keep.map((row) => ({ kv, row }));
  // Gathering into length - trim columns cuts the shared leading padding.
  const length = kv.length - trim;
  const { kvHeads, headSize } = shape;
  const out: KvBatch = { rows: keep.length, length, keys: [], values: [], mask: new Uint8Array(keep.length * length) };
  for (let l = 0; l < shape.layers; l++) {
    const k = alloc(shape, keep.length * kvHeads * length * headSize);
    const v = alloc(shape, keep.length * kvHeads * length * headSize);
    trimmed.forEach(({ row }, r) => {
      for (let h = 0; h < kvHeads; h++) {
        const from = ((row * kvHeads + h) * kv.length + trim) * headSize;
        const to = (r * kvHeads + h) * length * headSize;
        k.set((kv.keys[l] as KvArray).subarray(from, from + length * headSize), to);
        v.set((kv.values[l] as KvArray).subarray(from, from + length * headSize), to);
      }
    });
    out.keys.push(k);
    out.values.push(v);
  }
  keep.forEach((row, r) => out.mask.set(kv.mask.subarray(row * kv.length + trim, (row + 1) * kv.length), r * length));
  return out;
}

/** Appends the rows of `b` after the rows of `a`, padding the shorter on the left. */
export function concatRows(shape: KvShape, a: KvBatch, b: KvBatch): KvBatch {
  if (a.rows === 0) return b;
  if (b.rows === 0) return a;
  const length = Math.max(a.length, b.length);
  const parts = [
    ...Array.from({ length: a.rows }, (_, row) => ({ kv: a, row })),
    ...Array.from({ length: b.rows }, (_, row) => ({ kv: b, row })),
  ];
  return gather(shape, parts, length);
}
