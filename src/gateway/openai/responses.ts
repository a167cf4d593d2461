/**
 * Turns a backend's frame stream into OpenAI responses: a whole `chat.completion`, or the
 * `chat.completion.chunk` SSE stream (role chunk, content chunks, finish chunk, optional usage
 * chunk, `[DONE]`). An error after streaming began is one `data: {"error": ...}` event, then close.
 */
import type { ChatCompletion, ChatCompletionUsage } from "../../protocol/openai.js";
import type { GenerateFrame } from "../../protocol/backend.js";
import type { AnswerSummary } from "../answer.js";
import { BackendProtocolError, BackendReportedError, midStreamError } from "../errors.js";

/** The backend's frames after its start frame, as the backend client reads them (services/backends/frames.ts). */
export interface FrameSource {
  next(): Promise<GenerateFrame | null>;
  /** Every frame left, once the stream has ended, and when its first bytes came. */
  rest(): Promise<{ frames: GenerateFrame[]; firstAt: number | null }>;
  cancel(reason?: string): void;
}

/** Called once when the answer is finished (ended, failed, or the client went away). */
export type OnFinish = (summary: AnswerSummary) => void;

export interface CompletionMeta {
  id: string;
  created: number;
  model: string;
  includeUsage: boolean;
}

function usageOf(u: { prompt_tokens: number; completion_tokens: number }): ChatCompletionUsage {
  return {
    prompt_tokens: u.prompt_tokens,
    completion_tokens: u.completion_tokens,
    total_tokens: u.prompt_tokens + u.completion_tokens,
  };
}

/**
 * `clientGone` is the incoming request's signal: when the client hangs up, the backend's generation
 * is cancelled and the answer reported finished ("disconnected") even if nobody reads the stream
 * again; otherwise the request's after-work would wait for a finish that never comes.
 */
export async function collectCompletion(
  frames: FrameSource,
  meta: CompletionMeta,
  onFinish: OnFinish = () => {},
  clientGone?: AbortSignal,
): Promise<ChatCompletion> {
  const parts: string[] = [];
  let firstContentAt: number | null = null;
  let gone = false;
  const leave = () => {
    gone = true;
    frames.cancel("client disconnected");
  };
  if (clientGone?.aborted) leave();
  else clientGone?.addEventListener("abort", leave, { once: true });
  try {
    // Nobody streams this reply: read it whole, then walk its frames once.
    const { frames: all, firstAt } = await frames.rest();
    for (const frame of all) {
      if (frame.type === "text") {
        if (firstContentAt === null && frame.text !== "") firstContentAt = firstAt;
        parts.push(frame.text);
      } else if (frame.type === "end") {
        const content = parts.join("");
        onFinish({
          finishReason: frame.finish_reason,
          text: content,
          completionTokens: frame.usage.completion_tokens,
          firstContentAt,
        });
        return {
          id: meta.id,
          object: "chat.completion",
          created: meta.created,
          model: meta.model,
          system_fingerprint: null,
          choices: [
            {
              index: 0,
              message: { role: "assistant", content, refusal: null },
              logprobs: null,
              finish_reason: frame.finish_reason,
            },
          ],
          usage: usageOf(frame.usage),
        };
      } else if (frame.type === "error") {
        throw new BackendReportedError(frame.error);
      } else {
        throw new BackendProtocolError("a second start frame");
      }
    }
    throw new BackendProtocolError("the stream ended before its end frame");
  } catch (err) {
    frames.cancel();
    const e = midStreamError(err);
    if (gone) onFinish({ finishReason: "disconnected", text: parts.join(""), completionTokens: null, firstContentAt });
    else
      onFinish({
        finishReason: "error",
        text: parts.join(""),
        completionTokens: null,
        firstContentAt,
        status: e.status,
      });
    throw e;
  } finally {
    clientGone?.removeEventListener("abort", leave);
  }
}

const encoder = new TextEncoder();

/** How a streamed answer learns that its client is gone, and keeps its request open until it ends. */
export interface StreamWatch {
  /** The incoming request's signal (aborted when the client hangs up). */
  clientGone?: AbortSignal;
  /**
   * Given the answer's end once the client reads past the first chunk: the request's waitUntil, so
   * that a client leaving mid-stream still gets its record written (workerd cancels a request's
   * pending work on disconnect otherwise). Not before: a body nobody ever reads must not hold the
   * request open for an end that may never come.
   */
  keepOpen?: (until: Promise<void>) => void;
  /** A client that stops reading for this long is taken as gone (every wait is bounded). */
  readerIdleMs?: number;
}

export function streamCompletion(
  frames: FrameSource,
  meta: CompletionMeta,
  onFinish: OnFinish = () => {},
  watch: StreamWatch = {},
): ReadableStream<Uint8Array> {
  const { clientGone, keepOpen, readerIdleMs } = watch;
  // Every chunk shares this prefix; building it once keeps the per-token cost to one string concat.
  const prefix = `data: {"id":${JSON.stringify(meta.id)},"object":"chat.completion.chunk","created":${meta.created},"model":${JSON.stringify(meta.model)},"system_fingerprint":null,"choices":[`;
  const usageNull = meta.includeUsage ? `,"usage":null` : "";
  const chunk = (delta: string, finish: string) =>
    `${prefix}{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish}}]${usageNull}}\n\n`;
  let closed = false;
  const parts: string[] = [];
  let firstContentAt: number | null = null;
  let ended!: () => void;
  const end = new Promise<void>((resolve) => (ended = resolve));
  let kept = false;
  let idle: ReturnType<typeof setTimeout> | undefined;
  const finish = (finishReason: AnswerSummary["finishReason"], completionTokens: number | null) => {
    clientGone?.removeEventListener("abort", leave);
    clearTimeout(idle);
    onFinish({ finishReason, text: parts.join(""), completionTokens, firstContentAt });
    ended();
  };
  // The client went away: stop the backend's generation too. The runtime does not always cancel a
  // response body nobody will read (a client that leaves just as the answer starts), so the
  // request's own signal says it as well, and a reader silent for too long counts as gone.
  function leave(): void {
    if (closed) return;
    closed = true;
    frames.cancel("client disconnected");
    try {
      stream?.close();
    } catch {
      // already cancelled by the runtime
    }
    finish("disconnected", null);
  }
  const waitForReader = () => {
    if (readerIdleMs !== undefined && !closed) idle = setTimeout(leave, readerIdleMs);
  };
  if (clientGone?.aborted) queueMicrotask(leave);
  else clientGone?.addEventListener("abort", leave, { once: true });
  waitForReader();

  let stream: ReadableStreamDefaultController<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      stream = controller;
      controller.enqueue(encoder.encode(chunk(`{"role":"assistant","content":""}`, "null")));
    },
    async pull(controller) {
      if (closed) return;
      clearTimeout(idle);
      if (!kept) {
        kept = true;
        keepOpen?.(end);
      }
      const send = (text: string) => controller.enqueue(encoder.encode(text));
      try {
        const frame = await frames.next();
        if (frame === null) throw new BackendProtocolError("the stream ended before its end frame");
        switch (frame.type) {
          case "text":
            if (frame.text !== "") {
              if (firstContentAt === null) firstContentAt = Date.now();
              parts.push(frame.text);
              send(chunk(`{"content":${JSON.stringify(frame.text)}}`, "null"));
            }
            waitForReader();
            return;
          case "start":
            throw new BackendProtocolError("a second start frame");
          case "error":
            throw new BackendReportedError(frame.error);
          case "end": {
            let tail = chunk("{}", JSON.stringify(frame.finish_reason));
            if (meta.includeUsage) {
              tail += `${prefix}],"usage":${JSON.stringify(usageOf(frame.usage))}}\n\n`;
            }
            send(`${tail}data: [DONE]\n\n`);
            closed = true;
            controller.close();
            finish(frame.finish_reason, frame.usage.completion_tokens);
            return;
          }
        }
      } catch (err) {
        frames.cancel();
        closed = true;
        send(`data: ${JSON.stringify(midStreamError(err).body())}\n\n`);
        controller.close();
        finish("error", null);
      }
    },
    cancel() {
      leave();
    },
  });
}
