import type { DeltaLayer } from "../../protocol/delta.js";
import type { RowDelta } from "../generation/engine.js";

const zeroCache = new WeakMap<ReadonlyMap<number, DeltaLayer>, boolean>();

function isZero(layers: ReadonlyMap<number, DeltaLayer>): boolean {
  let zero = zeroCache.get(layers);
  if (zero === undefined) {
    zero = [...layers.values()].every(
      (l) => l.b.every((v) => v === 0) && (l.A.every((v) => v === 0) || l.B.every((v) => v === 0)),
    );
    zeroCache.set(layers, zero);
  }
  return zero;
}

/**
 * The edit a row carries, or null when it changes nothing (scale 0, or an edit that is zero): such
 * rows run like rows without a delta, so they get the unedited model's logits bit for bit also on
 * fp16 graphs, where a zero edit through the hooked graph is exact only to fp16 rounding.
 */
export function toRowDelta(id: string, scale: number, layers: ReadonlyMap<number, DeltaLayer>): RowDelta | null {
  if (scale === 0 || isZero(layers)) return null;
  return { id, scale, layers };
}
