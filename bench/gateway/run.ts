/**
 * How much latency the gateway adds. The same requests go straight to a local backend (its
 * internal generate API) and through the gateway under `wrangler dev` (OpenAI API, auth, language
 * detection, routing, SSE/JSON conversion), at concurrency 1 and 64, in one run.
 *
 *   npm run bench:gateway            (BENCH_REQUESTS=n scales the request counts)
 *
 * All processes share this machine's cores: load generator, gateway (workerd) and backend.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { Agent, request } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { GENERATE_PATH, type GenerateRequest } from "../../src/protocol/backend.js";
import { ROOT, applyMigrations, freePort, registerKeys, startGateway, waitForHttp } from "../../scripts/local-stack.js";

const SCALE = Number(process.env["BENCH_REQUESTS"] ?? 1);
const CLIENT_KEY = "lens-bench-client-key";
const PROMPT = "Can you explain how a rainbow forms after the rain?";
const MODEL = "lens-test-echo";

interface Target {
  name: string;
  port: number;
  path: string;
  headers: Record<string, string>;
  body: (i: number) => string;
}

interface Stats {
  n: number;
  errors: number;
  p50: number;
  p99: number;
  rps: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** One request; resolves with milliseconds to the whole body (`firstByte`: to the first content). */
function timeOne(agent: Agent, t: Target, i: number, firstContent?: (chunk: string) => boolean): Promise<number> {
  const body = t.body(i);
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let done = false;
    const req = request(
      { host: "127.0.0.1", port: t.port, path: t.path, method: "POST", agent, headers: { ...t.headers, "content-length": Buffer.byteLength(body) } },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`status ${res.statusCode}`));
          return;
        }
        res.setEncoding("utf8");
        let seen = "";
        res.on("data", (chunk: string) => {
          if (firstContent && !done) {
            seen += chunk;
            if (firstContent(seen)) {
              done = true;
              resolve(performance.now() - start);
            }
          }
        });
        res.on("end", () => {
          if (!done) resolve(performance.now() - start);
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function load(t: Target, concurrency: number, total: number, firstContent?: (s: string) => boolean): Promise<Stats> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const times: number[] = [];
  let errors = 0;
  let next = 0;
  // Warm-up: connections, JIT, isolate caches.
  await Promise.all(Array.from({ length: concurrency }, (_, i) => timeOne(agent, t, i, firstContent).catch(() => 0)));
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        try {
          times.push(await timeOne(agent, t, i, firstContent));
        } catch {
          errors++;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  times.sort((a, b) => a - b);
  return { n: times.length, errors, p50: percentile(times, 50), p99: percentile(times, 99), rps: times.length / seconds };
}

const generateBody = (stream: boolean) => (i: number): string => {
  const req: GenerateRequest = {
    request_id: `bench-${stream ? "s" : "n"}-${i}`,
    model: MODEL,
    messages: [{ role: "user", content: PROMPT }],
    sampling: { temperature: 1, top_p: 1, stop: [] },
    language: "en",
    delta: null,
  };
  return JSON.stringify(req);
};
const chatBody = (stream: boolean) => (): string =>
  JSON.stringify({ model: MODEL, stream, messages: [{ role: "user", content: PROMPT }] });

function spawnBackend(port: number): ChildProcess {
  return spawn(process.execPath, ["--import", "tsx", "bench/gateway/backend.ts"], {
    cwd: ROOT,
    env: { ...process.env, BACKEND_PORT: String(port) },
    stdio: ["ignore", "ignore", "inherit"],
  });
}

const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "-");
const signed = (n: number) => (n >= 0 ? "+" : "") + n.toFixed(2);

async function main(): Promise<void> {
  const state = mkdtempSync(join(tmpdir(), "lens-bench-"));
  const backendPort = await freePort();
  const backend = spawnBackend(backendPort);
  let gateway: Awaited<ReturnType<typeof startGateway>> | undefined;
  try {
    await waitForHttp(`http://127.0.0.1:${backendPort}/internal/v1/health`, backend);
    applyMigrations(state);
    registerKeys({ client: CLIENT_KEY, admin: "lens-bench-admin-key" }, state);
    gateway = await startGateway({
      port: await freePort(),
      vars: { BACKEND_URLS: `http://127.0.0.1:${backendPort}` },
      persistTo: state,
      quiet: true,
    });
    const gatewayPort = Number(new URL(gateway.url).port);

    const direct = (stream: boolean): Target => ({
      name: "direct",
      port: backendPort,
      path: GENERATE_PATH,
      headers: { "content-type": "application/json" },
      body: generateBody(stream),
    });
    const viaGateway = (stream: boolean): Target => ({
      name: "gateway",
      port: gatewayPort,
      path: "/v1/chat/completions",
      headers: { "content-type": "application/json", authorization: `Bearer ${CLIENT_KEY}` },
      body: chatBody(stream),
    });
    const directFirst = (s: string) => s.includes('"type":"text"');
    const gatewayFirst = (s: string) => s.includes('"delta":{"content"');

    const rows: Array<{ what: string; c: number; d: Stats; g: Stats }> = [];
    const scenarios = [
      { what: "non-streaming, whole reply", c: 1, n: 1500, stream: false },
      { what: "non-streaming, whole reply", c: 64, n: 6400, stream: false },
      { what: "streaming, first content", c: 1, n: 1500, stream: true },
    ];
    for (const s of scenarios) {
      const total = Math.max(s.c, Math.round(s.n * SCALE));
      const d = await load(direct(s.stream), s.c, total, s.stream ? directFirst : undefined);
      const g = await load(viaGateway(s.stream), s.c, total, s.stream ? gatewayFirst : undefined);
      rows.push({ what: s.what, c: s.c, d, g });
    }

    console.log("\nLatency the gateway adds (ms; same requests, direct to the backend vs through wrangler dev)\n");
    const header = ["scenario", "conc", "n", "direct p50", "gateway p50", "added p50", "direct p99", "gateway p99", "added p99", "direct req/s", "gateway req/s", "errors"];
    const lines = rows.map((r) => [
      r.what, String(r.c), String(r.g.n), fmt(r.d.p50), fmt(r.g.p50), signed(r.g.p50 - r.d.p50),
      fmt(r.d.p99), fmt(r.g.p99), signed(r.g.p99 - r.d.p99), r.d.rps.toFixed(0), r.g.rps.toFixed(0), String(r.d.errors + r.g.errors),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
    const print = (cells: string[]) => console.log("| " + cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ") + " |");
    print(header);
    console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
    for (const l of lines) print(l);
    console.log("\nDESIGN targets: added p50 <= 0.3 ms, p99 <= 1.5 ms (one client); peer Portkey on Node: +0.6 / +3.5 ms.");
    console.log("The gateway runs in workerd under wrangler dev on the same 2 cores as the backend and this load generator.");
  } finally {
    await gateway?.stop();
    backend.kill("SIGTERM");
    rmSync(state, { recursive: true, force: true });
  }
}

await main();
