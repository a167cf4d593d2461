/**
 * An instant OpenAI-style upstream for the peer comparison: `POST /v1/chat/completions` answers one
 * fixed `chat.completion`, or with `"stream": true` the same reply as `chat.completion.chunk` SSE
 * events (role chunk, one chunk per word, finish chunk, `[DONE]`), each event its own write, as the
 * stand-in backend writes each frame. Every body is built once, so the upstream does no work per
 * request beyond reading the request body and finding `"stream":true` in it.
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { echoTokens } from "../../dev/echo.js";

export const UPSTREAM_PATH = "/v1/chat/completions";

interface Bodies {
  json: string;
  events: string[];
}

function buildBodies(reply: string, model: string): Bodies {
  const created = Math.floor(Date.now() / 1000);
  const head = { id: "chatcmpl-bench", object: "chat.completion", created, model, system_fingerprint: null };
  const usage = { prompt_tokens: 12, completion_tokens: echoTokens(reply).length };
  const json = JSON.stringify({
    ...head,
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: reply, refusal: null },
        logprobs: null,
        finish_reason: "stop",
      },
    ],
    usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
  });
  const chunk = (delta: Record<string, string>, finish: string | null) =>
    `data: ${JSON.stringify({
      ...head,
      object: "chat.completion.chunk",
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    })}\n\n`;
  const events = [
    chunk({ role: "assistant", content: "" }, null),
    ...echoTokens(reply).map((word) => chunk({ content: word }, null)),
    chunk({}, "stop"),
    "data: [DONE]\n\n",
  ];
  return { json, events };
}

function answer(bodies: Bodies, req: IncomingMessage, res: ServerResponse): void {
  // GET / says it is up.
  if (req.method === "GET" && req.url === "/") {
    res.writeHead(200).end("ok");
    return;
  }
  if (req.method !== "POST" || req.url !== UPSTREAM_PATH) {
    req.resume();
    res.writeHead(404).end();
    return;
  }
  let body = "";
  req.setEncoding("utf8");
  req.on("data", (chunk: string) => {
    body += chunk;
  });
  req.on("end", () => {
    if (!/"stream"\s*:\s*true/.test(body)) {
      res.writeHead(200, { "content-type": "application/json" }).end(bodies.json);
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    for (const event of bodies.events) res.write(event);
    res.end();
  });
}

/** Listens on 127.0.0.1:`port` (0: any free port); every answer carries `reply`. */
export async function startOpenAiUpstream(port: number, reply: string, model: string): Promise<Server> {
  const bodies = buildBodies(reply, model);
  const server = createServer((req, res) => answer(bodies, req, res));
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const address = server.address() as AddressInfo;
  console.log(`http://127.0.0.1:${address.port}`);
  return server;
}
