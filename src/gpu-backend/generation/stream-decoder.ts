/**
 * Turns a growing list of token ids into text pieces that never split a character. No tokenizer
 * library streams, and decoding one token alone loses context (Llama decoders drop its leading
 * space; a byte-level token may be a third of a character), so each step decodes a short window
 * twice: the text up to the last emitted token, and up to now; the difference is the new text,
 * held back while it ends in an incomplete character (U+FFFD), for at most MAX_HELD tokens.
 */
const MAX_HELD = 8;

export class StreamDecoder {
  private readonly ids: number[] = [];
  /** Window start: tokens before it are never decoded again. */
  private prefixOffset = 0;
  /** Tokens up to here have been emitted. */
  private readOffset = 0;

  constructor(private readonly decode: (ids: number[]) => string) {}

  /** Adds a token; returns the text that is now final (possibly empty). */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.decode(this.ids.slice(this.prefixOffset));
    const held = this.ids.length - this.readOffset;
    if (full.length > prefix.length && (!full.endsWith("\uFFFD") || held >= MAX_HELD)) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return full.slice(prefix.length);
    }
    return "";
  }

  /** Whatever is still held back, at the end of generation. */
  flush(): string {
    if (this.readOffset === this.ids.length) return "";
    const prefix = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return full.slice(prefix.length);
  }
}
