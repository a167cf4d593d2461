/**
 * One chat request over plain node:http (keep-alive, no socket cap), timed and classified:
 *
 *   complete  200, SSE chunks of one completion: role chunk, content, finish chunk, usage chunk
 *             (`choices: []`), `data: [DONE]`, then the close, nothing after it;
 *   error     a clean OpenAI-style error: a non-2xx answer whose body is `{"error": {message, type, ...}}`,
 *             or a 200 stream that carries one `data: {"error": {...}}` event and closes;
 *   broken    anything else: malformed SSE or JSON, chunks out of order, a stream that closes without
 *             `[DONE]` or an error, a network error, a client-side timeout, a non-OpenAI error body;
 *   hung-up   the client itself went away (`hangUpAfterMs`) before the answer ended.
 * A request without `stream: true` is complete when its 200 body is one `chat.completion`.
 */
import http from "node:http";

type Kind = "complete" | "error" | "broken" | "hung-up";

export interface Outcome {
  id: string;
  /** The language of the prompt sent (from the prompt set). */
  promptLanguage: string;
  /** The gateway's `x-lens-language`, `x-lens-arm`, `x-lens-delta`, `x-request-id` headers. */
  language: string | null;
  arm: string | null;
  delta: string | null;
  echoedId: string | null;
  status: number;
  retryAfter: string | null;
  kind: Kind;
  /** For errors: the OpenAI error `code` (else `type`); for a mid-stream error, prefixed `stream:`. */
  errorCode: string | null;
  /** For broken requests: what was wrong. */
  broken: string | null;
  /** ms from sending to the first non-empty content chunk; null when none came. */
  ttftMs: number | null;
  totalMs: number;
  promptTokens: number | null;
  completionTokens: number | null;
  /** A complete stream whose reply had no content (the model stopped at once). */
  empty: boolean;
}

const newAgent = () =>
  new http.Agent({ keepAlive: process.env["LOAD_KEEPALIVE"] !== "0", maxSockets: Infinity, maxFreeSockets: 1024 });
let agent = newAgent();

/** Closes every connection; the next request opens fresh ones (each level starts with a new client). */
export function resetConnections(): void {
  agent.destroy();
  agent = newAgent();
}

export interface ChatCall {
  url: URL;
  apiKey: string;
  id: string;
  promptLanguage: string;
  body: unknown;
  timeoutMs: number;
  /** The client hangs up this long after sending, unless the answer has ended by then. */
  hangUpAfterMs?: number;
}

const header = (res: http.IncomingMessage, name: string): string | null => {
  const v = res.headers[name];
  return typeof v === "string" ? v : Array.isArray(v) ? (v[0] ?? null) : null;
};

function isOpenAIError(v: unknown): v is { error: { message: string; type: string; code?: unknown } } {
  if (typeof v !== "object" || v === null) return false;
  const e = (v as { error?: unknown }).error;
  return (
    typeof e === "object" &&
    e !== null &&
    typeof (e as { message?: unknown }).message === "string" &&
    typeof (e as { type?: unknown }).type === "string"
  );
}

const errorCodeOf = (e: { error: { type: string; code?: unknown } }) =>
  typeof e.error.code === "string" && e.error.code !== "" ? e.error.code : e.error.type;

/** Checks SSE events as they arrive; `fail` says the first thing that broke the protocol. */
class SseChecker {
  private buffer = "";
  sawRole = false;
  sawContent = false;
  sawFinish = false;
  sawUsage = false;
  sawDone = false;
  errorCode: string | null = null;
  firstContentAt: number | null = null;
  usage: { prompt_tokens: number; completion_tokens: number } | null = null;
  fail: string | null = null;
  private chunkId: string | null = null;

  push(text: string): void {
    this.buffer += text;
    for (;;) {
      const end = this.buffer.indexOf("\n\n");
      if (end < 0) return;
      const event = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      this.event(event);
    }
  }

  finish(): void {
    if (this.buffer.trim() !== "")
      this.broke(`trailing bytes without an event end: ${JSON.stringify(this.buffer.slice(0, 80))}`);
    if (this.fail) return;
    if (this.errorCode !== null) return;
    if (!this.sawDone) this.broke("the stream closed without data: [DONE] or an error event");
    else if (!this.sawRole || !this.sawFinish || !this.sawUsage) {
      this.broke(
        `[DONE] without ${[!this.sawRole && "role", !this.sawFinish && "finish", !this.sawUsage && "usage"].filter(Boolean).join(", ")} chunk`,
      );
    }
  }

  private broke(why: string): void {
    this.fail ??= why;
  }

  private event(event: string): void {
    if (this.fail) return;
    if (this.sawDone || this.errorCode !== null) return this.broke("an event after [DONE] or after the error event");
    const lines = event.split("\n").filter((l) => l !== "" && !l.startsWith(":"));
    if (lines.length !== 1 || !lines[0]!.startsWith("data: "))
      return this.broke(`not a single data line: ${JSON.stringify(event.slice(0, 80))}`);
    const data = lines[0]!.slice(6);
    if (data === "[DONE]") {
      this.sawDone = true;
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      return this.broke(`data that is not JSON: ${JSON.stringify(data.slice(0, 80))}`);
    }
    if (isOpenAIError(json)) {
      this.errorCode = `stream:${errorCodeOf(json)}`;
      return;
    }
    const c = json as { id?: unknown; object?: unknown; choices?: unknown; usage?: unknown };
    if (c.object !== "chat.completion.chunk" || typeof c.id !== "string" || !Array.isArray(c.choices))
      return this.broke("a chunk that is not a chat.completion.chunk");
    if (this.chunkId === null) this.chunkId = c.id;
    else if (c.id !== this.chunkId) return this.broke("chunks with different ids");
    if (c.choices.length === 0) {
      // The usage chunk: last before [DONE].
      const u = c.usage as { prompt_tokens?: unknown; completion_tokens?: unknown } | null | undefined;
      if (!this.sawFinish) return this.broke("the usage chunk before the finish chunk");
      if (!u || typeof u.prompt_tokens !== "number" || typeof u.completion_tokens !== "number")
        return this.broke("a usage chunk without usage");
      if (this.sawUsage) return this.broke("a second usage chunk");
      this.sawUsage = true;
      this.usage = { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens };
      return;
    }
    if (c.choices.length !== 1) return this.broke("a chunk with more than one choice");
    const choice = c.choices[0] as { delta?: { role?: unknown; content?: unknown }; finish_reason?: unknown };
    if (this.sawFinish) return this.broke("a choice chunk after the finish chunk");
    if (!this.sawRole) {
      if (choice.delta?.role !== "assistant") return this.broke("the first chunk is not the role chunk");
      this.sawRole = true;
      return;
    }
    if (typeof choice.finish_reason === "string") {
      this.sawFinish = true;
      return;
    }
    if (typeof choice.delta?.content !== "string") return this.broke("a content chunk without content");
    if (choice.delta.content !== "") {
      this.sawContent = true;
      this.firstContentAt ??= performance.now();
    }
  }
}

export function streamChat(call: ChatCall): Promise<Outcome> {
  const payload = JSON.stringify(call.body);
  const started = performance.now();
  return new Promise<Outcome>((resolve) => {
    const out: Outcome = {
      id: call.id,
      promptLanguage: call.promptLanguage,
      language: null,
      arm: null,
      delta: null,
      echoedId: null,
      status: 0,
      retryAfter: null,
      kind: "broken",
      errorCode: null,
      broken: null,
      ttftMs: null,
      totalMs: 0,
      promptTokens: null,
      completionTokens: null,
      empty: false,
    };
    let settled = false;
    const done = (patch: Partial<Outcome>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      Object.assign(out, patch);
      out.totalMs = performance.now() - started;
      resolve(out);
    };
    const req = http.request(call.url, {
      method: "POST",
      agent,
      headers: {
        authorization: `Bearer ${call.apiKey}`,
        "content-type": "application/json",
        "content-length": Buffer.byteLength(payload),
        "x-request-id": call.id,
      },
    });
    const timer = setTimeout(() => {
      done({ kind: "broken", broken: `no end within ${call.timeoutMs} ms` });
      req.destroy();
    }, call.timeoutMs);
    if (call.hangUpAfterMs !== undefined) {
      const hangUp = setTimeout(() => {
        done({ kind: "hung-up" });
        req.destroy();
      }, call.hangUpAfterMs);
      req.on("close", () => clearTimeout(hangUp));
    }
    req.on("error", (err) => {
      // A keep-alive connection the server closed just as it was reused fails before any byte.
      const where =
        out.status === 0
          ? req.reusedSocket
            ? " on a reused keep-alive connection, before any response"
            : " before any response"
          : "";
      done({ kind: "broken", broken: `network error: ${(err as NodeJS.ErrnoException).code ?? err.message}${where}` });
    });
    req.on("response", (res) => {
      out.status = res.statusCode ?? 0;
      out.language = header(res, "x-lens-language");
      out.arm = header(res, "x-lens-arm");
      out.delta = header(res, "x-lens-delta");
      out.echoedId = header(res, "x-request-id");
      out.retryAfter = header(res, "retry-after");
      res.setEncoding("utf8");
      res.on("error", (err) =>
        done({ kind: "broken", broken: `response error: ${(err as NodeJS.ErrnoException).code ?? err.message}` }),
      );
      res.on("close", () => {
        if (!res.complete) done({ kind: "broken", broken: "the connection was cut mid-response" });
      });
      if (out.status !== 200) {
        let text = "";
        res.on("data", (d: string) => (text += d));
        res.on("end", () => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            return done({
              kind: "broken",
              broken: `status ${out.status} with a body that is not JSON: ${JSON.stringify(text.slice(0, 80))}`,
            });
          }
          if (!isOpenAIError(json))
            return done({ kind: "broken", broken: `status ${out.status} with a non-OpenAI error body` });
          // A 429/503 without retry-after is still a clean error, but the code says so.
          const noRetryAfter = (out.status === 429 || out.status === 503) && out.retryAfter === null;
          done({ kind: "error", errorCode: `${errorCodeOf(json)}${noRetryAfter ? " (no retry-after)" : ""}` });
        });
        return;
      }
      if ((call.body as { stream?: unknown }).stream !== true) {
        let text = "";
        res.on("data", (d: string) => (text += d));
        res.on("end", () => {
          let json: {
            object?: unknown;
            choices?: { message?: { content?: unknown } }[];
            usage?: { prompt_tokens?: number; completion_tokens?: number };
          };
          try {
            json = JSON.parse(text) as typeof json;
          } catch {
            return done({
              kind: "broken",
              broken: `200 with a body that is not JSON: ${JSON.stringify(text.slice(0, 80))}`,
            });
          }
          const content = json.choices?.[0]?.message?.content;
          if (json.object !== "chat.completion" || typeof content !== "string")
            return done({ kind: "broken", broken: "200 without a chat.completion" });
          done({
            kind: "complete",
            promptTokens: json.usage?.prompt_tokens ?? null,
            completionTokens: json.usage?.completion_tokens ?? null,
            empty: content === "",
          });
        });
        return;
      }
      if (!(header(res, "content-type") ?? "").startsWith("text/event-stream")) {
        res.resume();
        return done({ kind: "broken", broken: `200 with content-type ${header(res, "content-type")}` });
      }
      const sse = new SseChecker();
      res.on("data", (d: string) => sse.push(d));
      res.on("end", () => {
        sse.finish();
        const ttftMs = sse.firstContentAt === null ? null : sse.firstContentAt - started;
        if (sse.fail) return done({ kind: "broken", broken: sse.fail, ttftMs });
        if (sse.errorCode !== null) return done({ kind: "error", errorCode: sse.errorCode, ttftMs });
        done({
          kind: "complete",
          ttftMs,
          promptTokens: sse.usage?.prompt_tokens ?? null,
          completionTokens: sse.usage?.completion_tokens ?? null,
          empty: !sse.sawContent,
        });
      });
    });
    req.end(payload);
  });
}
