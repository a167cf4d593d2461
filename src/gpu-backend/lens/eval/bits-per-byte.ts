/**
 * Bits per byte of the target language's prompt texts: -log2 p of the user text's tokens given the chat
 * frame before it ("<|user|>\n" for lens-tiny-chat), as tools/lens-tiny-chat/eval.ts counts it, with
 * the delta applied at every position (the frame's too); the text is cut to the longest prefix (whole
 * code points) that fits `window` tokens with the frame; bytes are the UTF-8 bytes of the text kept.
 * Pooled: total bits / total bytes.
 */
import type { ChatTokenizer } from "../../model/chat-tokenizer.js";
import { lengthBatches, logSoftmax, type DeltaLayers, type ForwardPasses } from "./passes.js";

export interface BitsPerByteResult {
  texts: number;
  bytes: number;
  bits: number;
  bitsPerByte: number;
}

export interface BitsRow {
  /** Frame prefix + text tokens. */
  ids: number[];
  /** Tokens before the text (the chat frame's start): bits are counted from here. */
  from: number;
  /** UTF-8 bytes of the text kept. */
  bytes: number;
}

/**
 * The ids whose bits are counted for a user text: the chat frame up to where the user's content starts
 * (the common prefix of the rendered turn with empty content and with this text), then the text's own
 * tokens, cut to the longest code-point prefix that fits `window` tokens in all.
 */
export function bitsRow(tokenizer: ChatTokenizer, text: string, window: number): BitsRow {
  const empty = tokenizer.encode(tokenizer.renderChat([{ role: "user", content: "" }], false));
  const full = tokenizer.encode(tokenizer.renderChat([{ role: "user", content: text }], false));
  let from = 0;
  while (from < empty.length && from < full.length && empty[from] === full[from]) from++;
  let kept = text;
  let own = tokenizer.encode(kept);
  if (from + own.length > window) {
    const points = Array.from(text);
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (from + tokenizer.encode(points.slice(0, mid).join("")).length <= window) lo = mid;
      else hi = mid - 1;
    }
    kept = points.slice(0, lo).join("");
    own = tokenizer.encode(kept);
  }
  if (own.length === 0) throw new RangeError("no text tokens fit the window");
  return { ids: [...full.slice(0, from), ...own], from, bytes: Buffer.byteLength(kept, "utf8") };
}

/** Bits of ids[from..] given what precedes each, from [T, V] logits of one row laid out from `offset`. */
function bitsFromLogits(
  logits: ArrayLike<number>,
  rowOffset: number,
  vocab: number,
  ids: readonly number[],
  from: number,
): number {
  let bits = 0;
  for (let pos = Math.max(1, from); pos < ids.length; pos++) {
    const lp = logSoftmax(logits, rowOffset + (pos - 1) * vocab, vocab);
    bits -= lp[ids[pos]!]! / Math.LN2;
  }
  return bits;
}

export async function bitsPerByteOf(
  passes: ForwardPasses,
  rows: readonly BitsRow[],
  delta: DeltaLayers | null,
  batchSize = 8,
): Promise<BitsPerByteResult> {
  let bits = 0;
  let bytes = 0;
  for (const batch of lengthBatches(
    rows.map((r) => r.ids),
    batchSize,
  )) {
    const out = await passes.run(
      batch.map((i) => rows[i]!.ids),
      delta,
    );
    batch.forEach((i, r) => {
      const row = rows[i]!;
      const offset = (r * out.T + out.T - row.ids.length) * out.vocab;
      bits += bitsFromLogits(out.logits, offset, out.vocab, row.ids, row.from);
      bytes += row.bytes;
    });
  }
  return { texts: rows.length, bytes, bits, bitsPerByte: bytes ? bits / bytes : Number.NaN };
}
