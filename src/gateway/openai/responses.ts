/**
 * Turns a backend's frame stream into OpenAI responses: a whole `chat.completion`, or the
 * `chat.completion.chunk` SSE stream (role chunk, content chunks, finish chunk, optional usage
 * chunk, `[DONE]`). An error after streaming began is one `data: {"error": ...}` event, then close.
 */
import type { ChatCompletion, ChatCompletionUsage } from "../../protocol/openai.js";
import { BackendProtocolError, BackendReportedError, midStreamError } from "../services/backends/errors.js";
import type { OpenGeneration } from "../services/backends/client.js";

export interface CompletionMeta {
  id: string;
  created: number;
  model: string;
  includeUsage: boolean;
}

function usageOf(u: { prompt_tokens: number; completion_tokens: number }): ChatCompletionUsage {
  return { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.prompt_tokens + u.completion_tokens };
}

export async function collectCompletion(gen: OpenGeneration, meta: CompletionMeta): Promise<ChatCompletion> {
  const parts: string[] = [];
  try {
    for (;;) {
      const frame = await gen.frames.next();
      if (frame === null) throw new BackendProtocolError("the stream ended before its end frame");
      if (frame.type === "text") parts.push(frame.text);
      else if (frame.type === "end") {
        return {
          id: meta.id,
          object: "chat.completion",
          created: meta.created,
          model: meta.model,
          system_fingerprint: null,
          choices: [
            { index: 0, message: { role: "assistant", content: parts.join(""), refusal: null }, logprobs: null, finish_reason: frame.finish_reason },
          ],
          usage: usageOf(frame.usage),
        };
      } else if (frame.type === "error") {
        throw new BackendReportedError(frame.error);
      } else {
        throw new BackendProtocolError("a second start frame");
      }
    }
  } catch (err) {
    gen.frames.cancel();
    throw midStreamError(err);
  }
}

const encoder = new TextEncoder();

export function streamCompletion(gen: OpenGeneration, meta: CompletionMeta): ReadableStream<Uint8Array> {
  // Every chunk shares this prefix; building it once keeps the per-token cost to one string concat.
  const prefix = `data: {"id":${JSON.stringify(meta.id)},"object":"chat.completion.chunk","created":${meta.created},"model":${JSON.stringify(meta.model)},"system_fingerprint":null,"choices":[`;
  const usageNull = meta.includeUsage ? `,"usage":null` : "";
  const chunk = (delta: string, finish: string) =>
    `${prefix}{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish}}]${usageNull}}\n\n`;
  let closed = false;

  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(chunk(`{"role":"assistant","content":""}`, "null")));
    },
    async pull(controller) {
      const send = (text: string) => controller.enqueue(encoder.encode(text));
      try {
        const frame = await gen.frames.next();
        if (frame === null) throw new BackendProtocolError("the stream ended before its end frame");
        switch (frame.type) {
          case "text":
            if (frame.text !== "") send(chunk(`{"content":${JSON.stringify(frame.text)}}`, "null"));
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
            send(tail + "data: [DONE]\n\n");
            closed = true;
            controller.close();
            return;
          }
        }
      } catch (err) {
        gen.frames.cancel();
        closed = true;
        send(`data: ${JSON.stringify(midStreamError(err).body())}\n\n`);
        controller.close();
      }
    },
    cancel() {
      // The client went away: stop the backend's generation too.
      if (!closed) gen.frames.cancel("client disconnected");
    },
  });
}
