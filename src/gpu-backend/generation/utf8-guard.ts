/**
 * Valid text from byte-level models. A model whose tokens are bytes (or byte sequences) can sample
 * a sequence that is not UTF-8: a continuation byte with no lead, a lead byte followed by ASCII, an
 * answer cut mid-character. Decoded, each is U+FFFD in the reply (Thai and CJK replies of the
 * embedded model were full of them). The guard tracks, per row, where the reply stands in a UTF-8
 * character, and the engine resamples, without the impossible tokens, whenever the sampled token
 * cannot follow. A token that can follow is never touched, so valid replies are unchanged.
 */

/** Where a row stands between tokens: what the next byte may be. */
export const Utf8State = {
  /** At a character boundary. */
  Free: 0,
  Need1: 1,
  Need2: 2,
  /** After E0: the next byte is A0..BF (no overlong forms). */
  Need2E0: 3,
  /** After ED: the next byte is 80..9F (no surrogates). */
  Need2ED: 4,
  Need3: 5,
  /** After F0: the next byte is 90..BF. */
  Need3F0: 6,
  /** After F4: the next byte is 80..8F (nothing past U+10FFFF). */
  Need3F4: 7,
} as const;
const STATES = 8;
const INVALID = -1;

function stepByte(state: number, b: number): number {
  const cont = b >= 0x80 && b <= 0xbf;
  switch (state) {
    case Utf8State.Free:
      if (b < 0x80) return Utf8State.Free;
      if (b >= 0xc2 && b <= 0xdf) return Utf8State.Need1;
      if (b === 0xe0) return Utf8State.Need2E0;
      if (b === 0xed) return Utf8State.Need2ED;
      if (b >= 0xe1 && b <= 0xef) return Utf8State.Need2;
      if (b === 0xf0) return Utf8State.Need3F0;
      if (b >= 0xf1 && b <= 0xf3) return Utf8State.Need3;
      if (b === 0xf4) return Utf8State.Need3F4;
      return INVALID;
    case Utf8State.Need1:
      return cont ? Utf8State.Free : INVALID;
    case Utf8State.Need2:
      return cont ? Utf8State.Need1 : INVALID;
    case Utf8State.Need2E0:
      return b >= 0xa0 && b <= 0xbf ? Utf8State.Need1 : INVALID;
    case Utf8State.Need2ED:
      return b >= 0x80 && b <= 0x9f ? Utf8State.Need1 : INVALID;
    case Utf8State.Need3:
      return cont ? Utf8State.Need2 : INVALID;
    case Utf8State.Need3F0:
      return b >= 0x90 && b <= 0xbf ? Utf8State.Need2 : INVALID;
    case Utf8State.Need3F4:
      return b >= 0x80 && b <= 0x8f ? Utf8State.Need2 : INVALID;
    default:
      return INVALID;
  }
}

export class Utf8Guard {
  /** next[state * size + token]: the state after the token, or INVALID when it cannot follow. */
  private readonly next: Int8Array;
  private readonly size: number;

  /**
   * `tokenBytes[id]`: the bytes a token decodes to, or null for tokens that decode to nothing
   * (specials); `endIds`: tokens that end the reply, allowed only at a character boundary.
   */
  private constructor(tokenBytes: ReadonlyArray<Uint8Array | null>, endIds: ReadonlySet<number>) {
    this.size = tokenBytes.length;
    this.next = new Int8Array(STATES * this.size);
    for (let state = 0; state < STATES; state++) {
      for (let id = 0; id < this.size; id++) {
        const bytes = tokenBytes[id];
        let s: number = state;
        if (endIds.has(id)) s = state === Utf8State.Free ? state : INVALID;
        else if (bytes) for (let i = 0; i < bytes.length && s !== INVALID; i++) s = stepByte(s, bytes[i] as number);
        this.next[state * this.size + id] = s;
      }
    }
  }

  /**
   * The guard for a vocabulary, or null when some state could not continue at all (a vocabulary
   * without byte tokens: masking would leave nothing to sample).
   */
  static build(tokenBytes: ReadonlyArray<Uint8Array | null>, endIds: ReadonlySet<number>): Utf8Guard | null {
    const guard = new Utf8Guard(tokenBytes, endIds);
    for (let state = 0; state < STATES; state++) {
      let any = false;
      for (let id = 0; id < guard.size && !any; id++) any = guard.next[state * guard.size + id] !== INVALID;
      if (!any) return null;
    }
    return guard;
  }

  /** Whether `token` can follow a reply in `state` (ids past the table: extra logits, left alone). */
  allows(state: number, token: number): boolean {
    return token >= this.size || (this.next[state * this.size + token] as number) !== INVALID;
  }

  /** The state after `token` (which `allows`). */
  after(state: number, token: number): number {
    return token >= this.size ? state : (this.next[state * this.size + token] as number);
  }

  /** Sets the logits of every token that cannot follow `state` to -Infinity. */
  mask(logits: Float32Array, offset: number, vocab: number, state: number): void {
    const base = state * this.size;
    const n = Math.min(vocab, this.size);
    for (let id = 0; id < n; id++) if ((this.next[base + id] as number) === INVALID) logits[offset + id] = -Infinity;
  }
}

/** GPT-2's byte-to-character map, which byte-level BPE vocabularies are written in. */
function byteLevelAlphabet(): Map<string, number> {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = bytes.map((b) => String.fromCodePoint(b));
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(String.fromCodePoint(256 + extra++));
    }
  }
  return new Map(chars.map((c, i) => [c, bytes[i] as number]));
}

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number> | unknown; byte_fallback?: boolean };
  decoder?: { type?: string; decoders?: { type?: string }[] } | null;
  added_tokens?: { id: number; special?: boolean }[];
}

/**
 * The bytes each token of a `tokenizer.json` decodes to, for the two byte-level families: ByteLevel
 * BPE (GPT-2, Llama 3, the embedded model) and BPE with byte fallback (Llama 2's `<0xHH>` tokens).
 * null for any other tokenizer: the guard then stays off.
 */
export function tokenBytesOf(json: TokenizerJson): (Uint8Array | null)[] | null {
  const model = json.model;
  if (model?.type !== "BPE" || typeof model.vocab !== "object" || model.vocab === null) return null;
  const vocab = model.vocab as Record<string, number>;
  const decoders = [json.decoder?.type, ...(json.decoder?.decoders ?? []).map((d) => d.type)];
  const specials = new Set((json.added_tokens ?? []).filter((t) => t.special !== false).map((t) => t.id));
  let size = 0;
  for (const id of Object.values(vocab)) size = Math.max(size, id + 1);
  for (const id of specials) size = Math.max(size, id + 1);
  const out: (Uint8Array | null)[] = new Array(size).fill(null);
  const encoder = new TextEncoder();
  if (decoders.includes("ByteLevel")) {
    const alphabet = byteLevelAlphabet();
    for (const [piece, id] of Object.entries(vocab)) {
      if (specials.has(id)) continue;
      const bytes: number[] = [];
      for (const ch of piece) {
        const b = alphabet.get(ch);
        if (b === undefined) return null;
        bytes.push(b);
      }
      out[id] = Uint8Array.from(bytes);
    }
    return out;
  }
  if (model.byte_fallback === true) {
    for (const [piece, id] of Object.entries(vocab)) {
      if (specials.has(id)) continue;
      const hex = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
      out[id] = hex
        ? Uint8Array.of(Number.parseInt(hex[1] as string, 16))
        : encoder.encode(piece.replace(/\u2581/g, " "));
    }
    return out;
  }
  return null;
}
