/**
 * How much latency the gateway adds. The same requests go straight to a local backend (its
 * internal generate API) and through the gateway under `wrangler dev` (OpenAI API, auth, language
 * detection, routing, SSE/JSON conversion), at concurrency 1 and 64, in one run.
 *
 *   npm run bench:gateway            (BENCH_REQUESTS=n scales the request counts)
 *
 * The gateway runs twice: under `wrangler dev` (which puts a proxy worker in a second workerd in
 * front of it), and in a single workerd through Miniflare with the bundle `wrangler deploy` would
 * upload, which is closer to what runs at the edge. A `GET /healthz` row shows each harness's floor.
 * All processes share this machine's cores: load generator, gateway (workerd) and backend.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { Agent, request } from "node:http";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Miniflare } from "miniflare";
import { GENERATE_PATH, type GenerateRequest, HEALTH_PATH } from "../../src/protocol/backend.js";
import {
  ROOT,
  applyMigrations,
  freePort,
  registerKeys,
  sha256,
  startGateway,
  waitForHttp,
  wrangler,
  wranglerSettings,
} from "../../dev/local-stack.js";
import { percentile } from "../../dev/percentile.js";

const SCALE = Number(process.env["BENCH_REQUESTS"] ?? 1);
const CLIENT_KEY = "lens-bench-client-key";
const PROMPT = "Can you explain how a rainbow forms after the rain?";
const MODEL = "lens-test-echo";

interface Target {
  port: number;
  path: string;
  headers: Record<string, string>;
  /** A POST body; none means GET. */
  body?: (i: number) => string;
}

interface Stats {
  n: number;
  errors: number;
  /** What the failures were, e.g. "status 503" or a socket error code. */
  errorKinds: Set<string>;
  p50: number;
  p99: number;
  rps: number;
}

/** One request; resolves with milliseconds to the whole body (`firstByte`: to the first content). */
function timeOne(agent: Agent, t: Target, i: number, firstContent?: (chunk: string) => boolean): Promise<number> {
  const body = t.body?.(i);
  const headers = body === undefined ? t.headers : { ...t.headers, "content-length": String(Buffer.byteLength(body)) };
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let done = false;
    const req = request(
      { host: "127.0.0.1", port: t.port, path: t.path, method: body === undefined ? "GET" : "POST", agent, headers },
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

async function load(
  t: Target,
  concurrency: number,
  total: number,
  firstContent?: (s: string) => boolean,
): Promise<Stats> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const times: number[] = [];
  let errors = 0;
  const errorKinds = new Set<string>();
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
        } catch (err) {
          errors++;
          errorKinds.add((err as NodeJS.ErrnoException).code ?? (err as Error).message);
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  times.sort((a, b) => a - b);
  return {
    n: times.length,
    errors,
    errorKinds,
    p50: percentile(times, 50) ?? Number.NaN,
    p99: percentile(times, 99) ?? Number.NaN,
    rps: times.length / seconds,
  };
}

const generateBody =
  (stream: boolean) =>
  (i: number): string => {
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

/** The gateway in one workerd, no dev proxy: the same bundle `wrangler deploy` uploads. */
async function startMiniflareGateway(
  backendUrl: string,
  outdir: string,
): Promise<{ port: number; stop: () => Promise<void> }> {
  wrangler(["deploy", "--dry-run", "--outdir", outdir]);
  const mf = new Miniflare({
    modules: true,
    scriptPath: join(outdir, "index.js"),
    modulesRoot: outdir,
    compatibilityDate: wranglerSettings().compatibilityDate,
    compatibilityFlags: wranglerSettings().compatibilityFlags,
    host: "127.0.0.1",
    port: await freePort(),
    d1Databases: { DB: "lens-bench" },
    r2Buckets: ["ADAPTERS"],
    bindings: { BACKEND_URLS: backendUrl },
  });
  const url = await mf.ready;
  const db = await mf.getD1Database("DB");
  for (const file of readdirSync(join(ROOT, "migrations"))
    .filter((f) => f.endsWith(".sql"))
    .sort()) {
    for (const stmt of readFileSync(join(ROOT, "migrations", file), "utf8")
      .replace(/--.*$/gm, "")
      .split(";")) {
      if (stmt.trim()) await db.prepare(stmt).run();
    }
  }
  await db
    .prepare(
      "INSERT INTO api_keys (id, key_hash, key_prefix, scope, created_at) VALUES ('key_bench', ?1, 'lens-bench-c', 'client', 0)",
    )
    .bind(sha256(CLIENT_KEY))
    .run();
  return { port: Number(url.port), stop: () => mf.dispose() };
}

function printTable(title: string, rows: Array<{ what: string; c: number; d: Stats; g: Stats }>): void {
  console.log(`\n${title}\n`);
  const header = [
    "scenario",
    "conc",
    "n",
    "direct p50",
    "gateway p50",
    "added p50",
    "direct p99",
    "gateway p99",
    "added p99",
    "direct req/s",
    "gateway req/s",
    "errors",
  ];
  const lines = rows.map((r) => [
    r.what,
    String(r.c),
    String(r.g.n),
    fmt(r.d.p50),
    fmt(r.g.p50),
    signed(r.g.p50 - r.d.p50),
    fmt(r.d.p99),
    fmt(r.g.p99),
    signed(r.g.p99 - r.d.p99),
    r.d.rps.toFixed(0),
    r.g.rps.toFixed(0),
    String(r.d.errors + r.g.errors) +
      (r.d.errors + r.g.errors > 0 ? ` (${[...r.d.errorKinds, ...r.g.errorKinds].join(", ")})` : ""),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const print = (cells: string[]) =>
    console.log(`| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`);
  print(header);
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const l of lines) print(l);
}

async function main(): Promise<void> {
  const state = mkdtempSync(join(tmpdir(), "lens-bench-"));
  const backendPort = await freePort();
  const backendUrl = `http://127.0.0.1:${backendPort}`;
  const backend = spawnBackend(backendPort);
  const stops: Array<() => Promise<void>> = [];
  try {
    await waitForHttp(`${backendUrl}${HEALTH_PATH}`, backend);
    applyMigrations(state);
    registerKeys({ client: CLIENT_KEY, admin: "lens-bench-admin-key" }, state);
    const dev = await startGateway({
      port: await freePort(),
      vars: { BACKEND_URLS: backendUrl },
      persistTo: state,
      quiet: true,
    });
    stops.push(dev.stop);
    const mf = await startMiniflareGateway(backendUrl, join(state, "bundle"));
    stops.push(mf.stop);

    const direct = (stream: boolean): Target => ({
      port: backendPort,
      path: GENERATE_PATH,
      headers: { "content-type": "application/json" },
      body: generateBody(stream),
    });
    const viaGateway = (port: number, stream: boolean): Target => ({
      port,
      path: "/v1/chat/completions",
      headers: { "content-type": "application/json", authorization: `Bearer ${CLIENT_KEY}` },
      body: chatBody(stream),
    });
    const directFirst = (s: string) => s.includes('"type":"text"');
    const gatewayFirst = (s: string) => s.includes('"delta":{"content"');
    const scenarios = [
      { what: "GET /healthz (harness floor)", c: 1, n: 1000, kind: "health" },
      { what: "non-streaming, whole reply", c: 1, n: 1500, kind: "json" },
      { what: "non-streaming, whole reply", c: 64, n: 6400, kind: "json" },
      { what: "streaming, first content", c: 1, n: 1500, kind: "stream" },
    ] as const;

    for (const [title, port] of [
      ["Through wrangler dev (proxy worker + gateway, two workerd processes)", Number(new URL(dev.url).port)],
      ["Through Miniflare (the deployable bundle in one workerd, no dev proxy)", mf.port],
    ] as const) {
      const rows: Array<{ what: string; c: number; d: Stats; g: Stats }> = [];
      for (const s of scenarios) {
        const total = Math.max(s.c, Math.round(s.n * SCALE));
        const stream = s.kind === "stream";
        const d =
          s.kind === "health"
            ? await load({ port: backendPort, path: HEALTH_PATH, headers: {} }, s.c, total)
            : await load(direct(stream), s.c, total, stream ? directFirst : undefined);
        const g =
          s.kind === "health"
            ? await load({ port, path: "/healthz", headers: {} }, s.c, total)
            : await load(viaGateway(port, stream), s.c, total, stream ? gatewayFirst : undefined);
        rows.push({ what: s.what, c: s.c, d, g });
      }
      printTable(`${title}; latency in ms, direct = the same request to the backend's internal API`, rows);
    }
    console.log(
      "\nDESIGN targets: added p50 <= 0.3 ms, p99 <= 1.5 ms (one client); peer Portkey on Node: +0.6 / +3.5 ms.",
    );
    console.log("Load generator, gateway and backend share this machine's cores.");
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    backend.kill("SIGTERM");
    rmSync(state, { recursive: true, force: true });
  }
}

await main();
