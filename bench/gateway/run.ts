/**
 * How much latency the gateway adds. The same requests go straight to a local backend (its
 * internal generate API) and through the gateway under `wrangler dev` (OpenAI API, auth, language
 * detection, routing, SSE/JSON conversion), at concurrency 1 and 64, in one run.
 *
 *   npm run bench:gateway            (BENCH_REQUESTS=n scales the request counts)
 *
 * Environment: BENCH_PEER=0 skips the peer, Portkey's gateway (installed on first use into
 * .bench-out/portkey/, never into package.json); BENCH_ROUNDS=n (default 2) rounds of ABBA blocks.
 *
 * The gateway runs twice: under `wrangler dev` (which puts a proxy worker in a second workerd in
 * front of it), and in a single workerd through Miniflare with the bundle `wrangler deploy` would
 * upload, which is closer to what runs at the edge. A `GET /healthz` row shows each harness's floor.
 * Then the Miniflare gateway and Portkey on Node alternate in blocks (peer.ts), each in front of its
 * own instant upstream: the stand-in backend for this gateway, an OpenAI-style one for Portkey.
 * All processes share this machine's cores: load generator, gateways and upstreams.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
import { echoReply } from "../../dev/echo.js";
import { type Stats, type Target, fmt, load, printTable, signed } from "./load.js";
import { type Contender, comparePeers } from "./peer.js";
import { PORTKEY_STREAM_PAUSE_MS, installPortkey, portkeyHeaders, startPortkey } from "./portkey.js";
import { childPid, settle } from "./proc.js";
import { UPSTREAM_PATH } from "./openai-upstream.js";

const SCALE = Number(process.env["BENCH_REQUESTS"] ?? 1);
const CLIENT_KEY = "lens-bench-client-key";
const PROMPT = "Can you explain how a rainbow forms after the rain?";
const MODEL = "lens-test-echo";
/** Chat requests sent to the Miniflare gateway, to check that each left its record. */
let mfChatRequests = 0;

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

/** One of the bench's upstreams (backend.ts) in its own process: the stand-in, or the OpenAI-style one. */
function spawnUpstream(port: number, kind: "stand-in" | "openai"): ChildProcess {
  const env: Record<string, string> =
    kind === "openai"
      ? { UPSTREAM: "openai", UPSTREAM_REPLY: echoReply(PROMPT), UPSTREAM_MODEL: MODEL }
      : { UPSTREAM: "stand-in" };
  return spawn(process.execPath, ["--import", "tsx", "bench/gateway/backend.ts"], {
    cwd: ROOT,
    env: { ...process.env, ...env, BACKEND_PORT: String(port) },
    stdio: ["ignore", "ignore", "inherit"],
  });
}

interface MiniflareGateway {
  port: number;
  /** The workerd process Miniflare runs the bundle in. */
  pid: number | undefined;
  /** Rows in the gateway's request-record table. */
  records(): Promise<number>;
  stop(): Promise<void>;
}

/** The gateway in one workerd, no dev proxy: the same bundle `wrangler deploy` uploads. */
async function startMiniflareGateway(backendUrl: string, outdir: string): Promise<MiniflareGateway> {
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
  const records = async () => (await db.prepare("SELECT COUNT(*) AS n FROM requests").first<{ n: number }>())?.n ?? 0;
  return { port: Number(url.port), pid: childPid("workerd"), records, stop: () => mf.dispose() };
}

type Row = { what: string; c: number; d: Stats; g: Stats };

function printHarnessTable(title: string, rows: Row[]): void {
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
  printTable(header, lines);
}

const directTarget =
  (backendPort: number) =>
  (stream: boolean): Target => ({
    port: backendPort,
    path: GENERATE_PATH,
    headers: { "content-type": "application/json" },
    body: generateBody(stream),
  });
const gatewayTarget =
  (port: number) =>
  (stream: boolean): Target => ({
    port,
    path: "/v1/chat/completions",
    headers: { "content-type": "application/json", authorization: `Bearer ${CLIENT_KEY}` },
    body: chatBody(stream),
  });
const directFirst = (s: string) => s.includes('"type":"text"');
/** The first content chunk of an OpenAI stream (the role chunk before it carries no content). */
const openAiFirst = (s: string) => s.includes('"delta":{"content"');

/** Both harnesses' tables: wrangler dev, then Miniflare. */
async function harnessTables(backendPort: number, devPort: number, mfPort: number): Promise<void> {
  const scenarios = [
    { what: "GET /healthz (harness floor)", c: 1, n: 1000, kind: "health" },
    { what: "non-streaming, whole reply", c: 1, n: 1500, kind: "json" },
    { what: "non-streaming, whole reply", c: 64, n: 6400, kind: "json" },
    { what: "streaming, first content", c: 1, n: 1500, kind: "stream" },
  ] as const;
  for (const [title, port] of [
    ["Through wrangler dev (proxy worker + gateway, two workerd processes)", devPort],
    ["Through Miniflare (the deployable bundle in one workerd, no dev proxy)", mfPort],
  ] as const) {
    const rows: Row[] = [];
    for (const s of scenarios) {
      const total = Math.max(s.c, Math.round(s.n * SCALE));
      const stream = s.kind === "stream";
      const d =
        s.kind === "health"
          ? await load({ port: backendPort, path: HEALTH_PATH, headers: {} }, s.c, total)
          : await load(directTarget(backendPort)(stream), s.c, total, stream ? directFirst : undefined);
      const g =
        s.kind === "health"
          ? await load({ port, path: "/healthz", headers: {} }, s.c, total)
          : await load(gatewayTarget(port)(stream), s.c, total, stream ? openAiFirst : undefined);
      if (port === mfPort && s.kind !== "health") mfChatRequests += g.sent;
      rows.push({ what: s.what, c: s.c, d, g });
    }
    printHarnessTable(`${title}; latency in ms, direct = the same request to the backend's internal API`, rows);
  }
  console.log(
    "\nDESIGN targets: added p50 <= 0.3 ms, p99 <= 1.5 ms (one client); peer Portkey on Node: +0.6 / +3.5 ms.",
  );
}

/** The peer comparison: this gateway in Miniflare (A) against Portkey on Node (B), ABBA blocks. */
async function peerComparison(
  mf: MiniflareGateway,
  backendPort: number,
  stops: Array<() => Promise<void>>,
): Promise<void> {
  if (process.env["BENCH_PEER"] === "0") {
    console.log("\nPeer comparison skipped (BENCH_PEER=0).");
    return;
  }
  const installed = installPortkey();
  if ("why" in installed) {
    console.log(`\nPeer comparison skipped: ${installed.why}`);
    return;
  }
  const upstreamPort = await freePort();
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
  const upstream = spawnUpstream(upstreamPort, "openai");
  stops.push(async () => void upstream.kill("SIGTERM"));
  const portkey = await startPortkey(installed.dir).catch((err: Error) => err);
  if (portkey instanceof Error) {
    console.log(`\nPeer comparison skipped: Portkey did not start (${portkey.message})`);
    return;
  }
  stops.push(portkey.stop);
  await waitForHttp(`${upstreamUrl}/`, upstream);
  const chat = (port: number, headers: Record<string, string>, path: string) => (stream: boolean) => ({
    port,
    path,
    headers,
    body: chatBody(stream),
  });
  const ours: Contender = {
    name: "this gateway (Miniflare, deployable bundle)",
    upstream: "stand-in backend, internal generate API (NDJSON)",
    pid: mf.pid,
    direct: directTarget(backendPort),
    via: gatewayTarget(mf.port),
    directFirst,
    viaFirst: openAiFirst,
    does:
      "API key checked (cached per isolate), request validated, language detected on prompt and reply, OpenAI <-> internal " +
      "protocol both ways, a request record written to D1 after each answer (waitUntil).",
  };
  const peer: Contender = {
    name: `Portkey ${installed.version} (Node, build/start-server.js)`,
    upstream: "instant OpenAI-style server, /v1/chat/completions",
    pid: portkey.pid,
    direct: chat(upstreamPort, { "content-type": "application/json" }, UPSTREAM_PATH),
    via: chat(portkey.port, portkeyHeaders(upstreamUrl), "/v1/chat/completions"),
    directFirst: openAiFirst,
    viaFirst: openAiFirst,
    streamPauseMs: PORTKEY_STREAM_PAUSE_MS,
    does:
      "header checks, the request forwarded to the custom host, the reply passed on (SSE split into events); " +
      "its default Node setup: no cache, no hooks, request log to stdout (here discarded).",
  };
  const rounds = Math.max(1, Number(process.env["BENCH_ROUNDS"] ?? 2) || 2);
  const [served] = await comparePeers(ours, peer, rounds, SCALE);
  mfChatRequests += served;
}

async function main(): Promise<void> {
  const state = mkdtempSync(join(tmpdir(), "lens-bench-"));
  const backendPort = await freePort();
  const backendUrl = `http://127.0.0.1:${backendPort}`;
  const backend = spawnUpstream(backendPort, "stand-in");
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
    await harnessTables(backendPort, Number(new URL(dev.url).port), mf.port);
    // Its two idle workerd processes would only add noise to the peer comparison.
    await dev.stop();
    await peerComparison(mf, backendPort, stops);
    await settle(mf.pid);
    const records = await mf.records();
    console.log(
      `\nRecords on: ${records} request records in the Miniflare gateway's D1 for ${mfChatRequests} chat requests sent to it` +
        (records === mfChatRequests ? "." : ` (${mfChatRequests - records} missing).`),
    );
    console.log("Load generator, gateways and upstreams share this machine's cores.");
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    backend.kill("SIGTERM");
    rmSync(state, { recursive: true, force: true });
  }
}

await main();
