import type * as ort from "onnxruntime-node";
import { decodeF16 } from "../../protocol/half.js";

/** A float output as float32, whatever its dtype (onnxruntime-node returns fp16 as raw Uint16 bits on Node 20). */
export function floatData(t: ort.Tensor): Float32Array {
  if (t.type === "float32") return t.data as Float32Array;
  if (t.type === "float16") {
    const d = t.data as ArrayLike<number>;
    return d instanceof Uint16Array
      ? decodeF16(new Uint8Array(d.buffer, d.byteOffset, d.byteLength))
      : Float32Array.from(d);
  }
  throw new Error(`expected a float output, got ${t.type}`);
}
