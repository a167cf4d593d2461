// The bench's upstreams, each as its own process, so that none shares the load generator's event loop:
// the stand-in backend (internal protocol), or with UPSTREAM=openai the instant OpenAI-style one.
import { startTestBackend } from "../../dev/stand-in-backend.js";
import { startOpenAiUpstream } from "./openai-upstream.js";

const port = Number(process.env["BACKEND_PORT"] ?? 0);
if (process.env["UPSTREAM"] === "openai") {
  await startOpenAiUpstream(port, process.env["UPSTREAM_REPLY"] ?? "", process.env["UPSTREAM_MODEL"] ?? "bench");
  // It holds no state: nothing to drain.
  process.on("SIGTERM", () => process.exit(0));
} else {
  const backend = await startTestBackend("echo", { port });
  console.log(backend.url);
  process.on("SIGTERM", () => void backend.close().then(() => process.exit(0)));
}
