/** Reads the backend's NDJSON generation stream frame by frame, validating each frame. */
import { GenerateFrame } from "../../../protocol/backend.js";
import { BackendProtocolError, BackendSilentError } from "../../errors.js";

export class FrameReader {
  private buffer = "";
  private readonly decoder = new TextDecoder();
  private finished = false;

  constructor(
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly idleTimeoutMs: number,
  ) {
    // When the backend's connection is lost, `closed` rejects too; workerd reports that as an
    // uncaught rejection unless someone handles it (the failure itself surfaces through read()).
    reader.closed.catch(() => {});
  }

  /**
   * The next frame, or null at the end of the stream. Throws on silence (longer than `timeoutMs`,
   * by default the idle timeout), bad frames or a lost connection.
   */
  async next(timeoutMs = this.idleTimeoutMs): Promise<GenerateFrame | null> {
    for (;;) {
      const newline = this.buffer.indexOf("\n");
      if (newline >= 0) {
        const line = this.buffer.slice(0, newline);
        this.buffer = this.buffer.slice(newline + 1);
        if (line.trim() !== "") return parseFrame(line);
        continue;
      }
      if (this.finished) {
        const rest = this.buffer;
        this.buffer = "";
        return rest.trim() === "" ? null : parseFrame(rest);
      }
      const chunk = await this.readWithTimeout(timeoutMs);
      if (chunk.done) {
        this.finished = true;
        this.buffer += this.decoder.decode();
      } else {
        this.buffer += this.decoder.decode(chunk.value, { stream: true });
      }
    }
  }

  /**
   * Every frame left, read to the end of the stream first (each read within the idle timeout):
   * for a reply nobody streams, one pass over the whole text instead of one per frame.
   */
  async rest(): Promise<{ frames: GenerateFrame[]; firstAt: number | null }> {
    // When the first bytes after the start frame came: the first content's arrival, near enough.
    let firstAt: number | null = this.buffer.trim() === "" ? null : Date.now();
    while (!this.finished) {
      const chunk = await this.readWithTimeout(this.idleTimeoutMs);
      if (chunk.done) {
        this.finished = true;
        this.buffer += this.decoder.decode();
      } else {
        firstAt ??= Date.now();
        this.buffer += this.decoder.decode(chunk.value, { stream: true });
      }
    }
    const frames: GenerateFrame[] = [];
    for (const line of this.buffer.split("\n")) if (line.trim() !== "") frames.push(parseFrame(line));
    this.buffer = "";
    return { frames, firstAt };
  }

  cancel(reason?: string): void {
    this.reader.cancel(reason).catch(() => {});
  }

  private readWithTimeout(timeoutMs: number): Promise<ReadableStreamReadResult<Uint8Array>> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new BackendSilentError(timeoutMs)), timeoutMs);
    });
    const read = this.reader.read();
    // If the timeout wins, the read may still fail later (the stream is cancelled): not an error then.
    read.catch(() => {});
    return Promise.race([read, timeout]).finally(() => clearTimeout(timer));
  }
}

function parseFrame(line: string): GenerateFrame {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new BackendProtocolError("the backend sent a frame that is not JSON");
  }
  // Text frames are nearly all of them: checked by hand, to the same result as the schema (which
  // keeps only `type` and `text`); the rare others go through it.
  const r = raw as { type?: unknown; text?: unknown } | null;
  if (r !== null && typeof r === "object" && r.type === "text" && typeof r.text === "string")
    return { type: "text", text: r.text };
  const frame = GenerateFrame.safeParse(raw);
  if (!frame.success) throw new BackendProtocolError("the backend sent a frame that does not match the protocol");
  return frame.data;
}
