/**
 * The local stack for the load run: two backends on the embedded model, local D1 with migrations
 * and keys, the gateway under `wrangler dev` routing to both; then adapters uploaded through the
 * admin API, one language's delta activated and an A/B experiment on another. Every child process
 * is registered so that `stopAll` (on exit, error or Ctrl-C) ends it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import {
  closeSync,
  cpSync,
  createWriteStream,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HEALTH_PATH, LIVE_PATH, backendAuthorization } from "../../src/protocol/backend.js";
import type { Language } from "../../src/protocol/languages.js";
import {
  ROOT,
  applyMigrations,
  backendSecret,
  freePort,
  registerKeys,
  stopChild,
  waitForHttp,
  wrangler,
  wranglerSettings,
} from "../../dev/local-stack.js";
import { makeDelta } from "../../dev/make-delta.js";
import { Miniflare } from "miniflare";
import { resetConnections } from "./client.js";

export const CLIENT_KEY = "lens-load-client-key";
const ADMIN_KEY = "lens-load-admin-key";

interface BackendHealth {
  model: string;
  fingerprint: string;
  hidden_size: number;
  num_layers: number;
}

export interface Stack {
  state: string;
  gatewayUrl: string;
  /** What serves the gateway now: "wrangler dev", or "workerd" (the deployable bundle, no dev proxy). */
  front: string;
  /** The gateway's variables (backends, secret). */
  vars: Record<string, string>;
  backendUrls: string[];
  health: BackendHealth;
  maxBatch: number;
  maxQueue: number;
  /** Rows of `sql` (a SELECT) from the local D1 the gateway writes to. */
  query<T>(sql: string): T[];
}

const children: ChildProcess[] = [];
let gatewayLog: string | undefined;

/** The last lines of the gateway's output other than its per-request lines. */
export function gatewayLogTail(lines = 40): string {
  if (!gatewayLog) return "";
  try {
    const text = readFileSync(gatewayLog, "utf8").split("\n");
    return text
      .filter((l) => !/^\[wrangler:info\] (POST|GET|PUT|DELETE) /.test(l))
      .slice(-lines)
      .join("\n");
  } catch {
    return "";
  }
}
/** Lines of the gateway's output so far that match `pattern` (e.g. workerd's "code had hung"). */
export function gatewayLogLines(pattern: RegExp): string[] {
  if (!gatewayLog) return [];
  try {
    return readFileSync(gatewayLog, "utf8")
      .split("\n")
      .filter((l) => pattern.test(l));
  } catch {
    return [];
  }
}
let stateDir: string | undefined;
let stopGateway: (() => Promise<void>) | undefined;

/** Ends every process started here and removes the temporary state; safe to call more than once. */
async function stopAll(): Promise<void> {
  const gw = stopGateway;
  stopGateway = undefined;
  await Promise.race([gw?.(), new Promise((r) => setTimeout(r, 5000))]);
  killAllNow();
  // LOAD_GATEWAY_LOG=<file> keeps the gateway's output.
  const keep = process.env["LOAD_GATEWAY_LOG"];
  if (keep && gatewayLog) cpSync(gatewayLog, keep);
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  stateDir = undefined;
}

/** Synchronous last resort (process "exit"): SIGKILL whatever is still running. */
function killAllNow(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

export async function startStack(o: { maxBatch: number; maxQueue: number }): Promise<Stack> {
  const state = mkdtempSync(join(tmpdir(), "lens-load-"));
  stateDir = state;
  const secret = backendSecret();
  const backendUrls: string[] = [];
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const child = spawn(process.execPath, ["--import", "tsx", "src/gpu-backend/server.ts"], {
      cwd: ROOT,
      env: {
        ...process.env,
        BACKEND_PORT: String(port),
        LENS_JOBS_DIR: join(state, `jobs-${i}`),
        LENS_BACKEND_SECRET: secret,
        LENS_MAX_BATCH: String(o.maxBatch),
        LENS_MAX_QUEUE: String(o.maxQueue),
      },
      stdio: ["ignore", "ignore", "inherit"],
    });
    children.push(child);
    backendUrls.push(`http://127.0.0.1:${port}`);
  }
  // Both load at once; waiting on each in turn costs nothing more.
  for (const [i, url] of backendUrls.entries()) await waitForHttp(`${url}${LIVE_PATH}`, children[i], 180_000);

  applyMigrations(state);
  registerKeys({ client: CLIENT_KEY, admin: ADMIN_KEY }, state);
  const vars = { BACKEND_URLS: backendUrls.join(","), BACKEND_SECRET: secret };
  const gateway = await startGatewaySnapshot(state, vars);

  const res = await fetch(`${backendUrls[0]}${HEALTH_PATH}`, {
    headers: { authorization: backendAuthorization(secret) },
  });
  if (!res.ok) throw new Error(`backend health: ${res.status} ${await res.text()}`);
  const health = (await res.json()) as BackendHealth;

  return {
    state,
    gatewayUrl: gateway.url,
    front: "wrangler dev",
    vars,
    backendUrls,
    health,
    maxBatch: o.maxBatch,
    maxQueue: o.maxQueue,
    query<T>(sql: string): T[] {
      const out = wrangler(["d1", "execute", "DB", "--local", "--json", "--command", sql], state);
      const parsed = JSON.parse(out) as { results: T[]; success: boolean }[];
      if (!parsed[0]?.success) throw new Error(`d1 query failed: ${out.slice(0, 200)}`);
      return parsed[0].results;
    },
  };
}

/**
 * `wrangler dev` rebuilds and restarts the worker whenever a source file changes, cutting every
 * request in flight ("Your worker restarted mid-request"). So the gateway runs from a copy of the
 * sources taken now: edits made in the working tree during the run do not reach it. Otherwise as
 * dev/local-stack.ts startGateway (same wrangler.toml, local D1/R2 under `state`).
 */
async function startGatewaySnapshot(state: string, vars: Record<string, string>): Promise<{ url: string }> {
  const dir = join(state, "gateway");
  cpSync(join(ROOT, "src"), join(dir, "src"), { recursive: true });
  for (const f of ["wrangler.toml", "package.json", "tsconfig.json", "tsconfig.base.json", "tsconfig.gateway.json"])
    cpSync(join(ROOT, f), join(dir, f));
  cpSync(join(ROOT, "migrations"), join(dir, "migrations"), { recursive: true });
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
  const port = await freePort();
  const args = ["dev", "--local", "--ip", "127.0.0.1", "--port", String(port), "--show-interactive-dev-session=false"];
  args.push("--inspector-port", String(await freePort()), "--persist-to", state);
  for (const [name, value] of Object.entries(vars)) args.push("--var", `${name}:${value}`);
  // Its output (one line per request, errors included) goes to a log; gatewayLogTail shows the end.
  gatewayLog = join(state, "gateway.log");
  const log = openSync(gatewayLog, "a");
  const child = spawn(join(ROOT, "node_modules", ".bin", "wrangler"), args, {
    cwd: dir,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  children.push(child);
  stopGateway = () => stopChild(child);
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/healthz`, child, 120_000);
  return { url };
}

/** The runtime and bindings wrangler.toml declares, as wrangler dev gives them to Miniflare locally. */
const SETTINGS = wranglerSettings();

/**
 * Replaces `wrangler dev` with the bundle `wrangler deploy` would upload, run in one workerd through
 * Miniflare over the same local D1/R2 state: the same runtime without wrangler's dev proxy (a
 * Durable Object that every request passes through on its way to the worker). Running both tells
 * the gateway's own behaviour apart from the dev proxy's.
 */
export async function switchToWorkerd(stack: Stack): Promise<void> {
  await stopGateway?.();
  stopGateway = undefined;
  const outdir = join(stack.state, "bundle");
  // Bundled from the copy wrangler dev ran, not the working tree: both fronts serve the same code.
  wrangler(["deploy", "--dry-run", "--outdir", outdir], undefined, join(stack.state, "gateway"));
  const v3 = join(stack.state, "v3");
  const mf = new Miniflare({
    modules: true,
    scriptPath: join(outdir, "index.js"),
    modulesRoot: outdir,
    compatibilityDate: SETTINGS.compatibilityDate,
    compatibilityFlags: SETTINGS.compatibilityFlags,
    host: "127.0.0.1",
    port: await freePort(),
    d1Databases: { DB: SETTINGS.d1DatabaseId },
    r2Buckets: { ADAPTERS: SETTINGS.r2Bucket },
    durableObjects: { RATE_LIMITER: "KeyRateLimiter" },
    d1Persist: join(v3, "d1"),
    r2Persist: join(v3, "r2"),
    durableObjectsPersist: join(v3, "do"),
    bindings: stack.vars,
    // workerd's own output joins the same log as wrangler dev's did; verbose, so that it reports
    // uncaught errors and requests it cancelled as hung, as wrangler dev's inspector does.
    verbose: true,
    handleRuntimeStdio(stdout: NodeJS.ReadableStream, stderr: NodeJS.ReadableStream) {
      if (!gatewayLog) return;
      const log = createWriteStream(gatewayLog, { flags: "a" });
      stdout.pipe(log);
      stderr.pipe(log);
    },
  });
  const url = await mf.ready;
  stopGateway = () => mf.dispose();
  stack.gatewayUrl = url.origin;
  stack.front = "workerd";
  await waitForHttp(`${stack.gatewayUrl}/healthz`, undefined, 60_000);
}

export async function admin(
  stack: Stack,
  method: string,
  path: string,
  body?: FormData | object,
): Promise<Record<string, unknown>> {
  const headers: Record<string, string> = { authorization: `Bearer ${ADMIN_KEY}` };
  let payload: FormData | string | undefined;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(`${stack.gatewayUrl}${path}`, {
    method,
    headers,
    ...(payload === undefined ? {} : { body: payload }),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Uploads a synthetic (seeded, small) delta for `language` on the served model; the adapter id. */
export async function uploadAdapter(stack: Stack, language: Language, seed: number): Promise<string> {
  const { health } = stack;
  const top = health.num_layers - 1;
  const d = makeDelta({
    hiddenSize: health.hidden_size,
    layers: top > 0 ? [top - 1, top] : [top],
    rank: 4,
    fingerprint: health.fingerprint,
    language,
    id: `load-${language}-${seed}`,
    seed,
    scale: 0.02,
  });
  d.manifest.base_model.id = health.model;
  d.manifest.method = { source: "bench/load synthetic delta", seed };
  const form = new FormData();
  form.set("manifest", JSON.stringify(d.manifest));
  form.set("tensors", new File([d.bytes], "delta.safetensors"));
  const row = await admin(stack, "POST", "/admin/adapters", form);
  return row["id"] as string;
}

export interface Arms {
  /** Languages whose requests carry an active delta. */
  active: { language: Language; adapter: string }[];
  experiment: { id: string; language: Language; arms: string[] };
}

/**
 * Adapters for three languages: fr and sw activated, es in an experiment (control: base model,
 * lens: the es adapter, 50/50 by the request's `user`).
 */
export async function setUpArms(stack: Stack): Promise<Arms> {
  const active: Arms["active"] = [];
  for (const [language, seed] of [
    ["fr", 11],
    ["sw", 12],
  ] as const) {
    const adapter = await uploadAdapter(stack, language, seed);
    await admin(stack, "PUT", `/admin/languages/${language}`, { adapter, scale: 1 });
    active.push({ language, adapter });
  }
  const es = await uploadAdapter(stack, "es", 13);
  const ex = await admin(stack, "POST", "/admin/experiments", {
    name: "load: es base vs synthetic adapter",
    languages: ["es"],
    arms: [
      { name: "control", delta: null, weight: 50 },
      { name: "lens", delta: es, scale: 1, weight: 50 },
    ],
  });
  return { active, experiment: { id: ex["id"] as string, language: "es", arms: ["control", "lens"] } };
}

/**
 * Runs a load command's `main` with the stack's lifecycle around it: Ctrl-C or SIGTERM stops the
 * stack, a crash is printed, every process started here is ended on the way out, and the process
 * exits with `main`'s code (1 on a crash).
 */
export async function runWithStack(main: () => Promise<number>): Promise<never> {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    console.error(`\n${signal}: stopping the stack ...`);
    resetConnections();
    void stopAll().finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", killAllNow);
  let code = 1;
  try {
    code = await main();
  } catch (err) {
    console.error(err);
  } finally {
    resetConnections();
    await stopAll();
  }
  process.exit(code);
}
