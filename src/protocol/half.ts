/**
 * IEEE 754 binary16 <-> binary32 conversion, runtime-neutral.
 *
 * Node 20 and workerd have no Float16Array / Math.f16round everywhere we run, so float16 delta
 * files are decoded (and, for tests and tools, encoded) here by hand.
 */

/** Every half-precision bit pattern's float32 value: 256 KiB, built on first use. */
let table: Float32Array | undefined;

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero and subnormals
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

function halfTable(): Float32Array {
  if (table === undefined) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = halfToFloat(h);
  }
  return table;
}

/** Decode little-endian float16 bytes into a new Float32Array (any alignment, any host). */
export function decodeF16(bytes: Uint8Array): Float32Array<ArrayBuffer> {
  const n = bytes.byteLength >>> 1;
  const out = new Float32Array(n);
  const t = halfTable();
  for (let i = 0; i < n; i++) out[i] = t[bytes[2 * i]! | (bytes[2 * i + 1]! << 8)]!;
  return out;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 -> float16 bits, rounding to nearest even; overflow gives +-Infinity, NaN stays NaN. */
export function floatToHalfBits(value: number): number {
  scratchF32[0] = value;
  const x = scratchU32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Result is a half subnormal (or zero): shift the full significand down, round to even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to Infinity).
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

/** Encode float32 values as little-endian float16 bytes. */
export function encodeF16(values: ArrayLike<number>): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(values.length * 2);
  for (let i = 0; i < values.length; i++) {
    const h = floatToHalfBits(values[i]!);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}
