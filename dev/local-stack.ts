/**
 * Pieces of the local stack shared by `npm start` and the benchmarks: local D1 migrations, key
 * registration, and a `wrangler dev` gateway process that is ready when this resolves.
 */
import { type ChildProcess, type SpawnSyncReturns, spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WRANGLER = fileURLToPath(new URL("../node_modules/.bin/wrangler", import.meta.url));
const wranglerEnv = { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" };

export function wrangler(args: string[], persistTo?: string, cwd = ROOT): string {
  const full = persistTo ? [...args, "--persist-to", persistTo] : args;
  const run = spawnSync(WRANGLER, full, { cwd, env: wranglerEnv, encoding: "utf8" });
  if (run.status !== 0) throw new Error(`wrangler ${args.join(" ")} failed:\n${run.stdout}\n${run.stderr}`);
  return run.stdout;
}

/** What wrangler.toml says of the runtime and the storage, for Miniflare runs of the deployable bundle. */
export function wranglerSettings(): {
  compatibilityDate: string;
  compatibilityFlags: string[];
  d1DatabaseId: string;
  r2Bucket: string;
} {
  const toml = readFileSync(join(ROOT, "wrangler.toml"), "utf8");
  const value = (key: string) => new RegExp(`^${key}\\s*=\\s*"([^"]+)"`, "m").exec(toml)?.[1] ?? "";
  const flags = /^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml)?.[1] ?? "";
  return {
    compatibilityDate: value("compatibility_date"),
    compatibilityFlags: [...flags.matchAll(/"([^"]+)"/g)].map((m) => m[1] as string),
    d1DatabaseId: value("database_id"),
    r2Bucket: value("bucket_name"),
  };
}

export function applyMigrations(persistTo?: string): void {
  wrangler(["d1", "migrations", "apply", "DB", "--local"], persistTo);
}

/** The backends' shared secret for a local stack: LENS_BACKEND_SECRET when set, else a fresh random one. */
export function backendSecret(): string {
  return process.env["LENS_BACKEND_SECRET"] || randomBytes(24).toString("hex");
}

export const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

export const sql = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** Makes the local D1 accept exactly these keys (and no key registered before). */
export function registerKeys(keys: { client: string; admin: string }, persistTo?: string): void {
  const now = Math.floor(Date.now() / 1000);
  const row = (id: string, key: string, scope: string) =>
    `(${sql(id)}, ${sql(sha256(key))}, ${sql(key.slice(0, 12))}, ${sql(scope)}, 'local start', ${now})`;
  const command =
    "DELETE FROM api_keys; INSERT INTO api_keys (id, key_hash, key_prefix, scope, name, created_at) VALUES " +
    `${row("key_local_client", keys.client, "client")}, ${row("key_local_admin", keys.admin, "admin")};`;
  wrangler(["d1", "execute", "DB", "--local", "--command", command], persistTo);
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export async function waitForHttp(url: string, child?: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null)
      throw new Error(`process exited with code ${child.exitCode} before ${url} answered`);
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Sends SIGTERM and resolves once the process has exited (at once if it already had). */
export function stopChild(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

/** The first lines of a failed `npm install`'s error output, without npm's boilerplate. */
export function npmErrorTail(r: SpawnSyncReturns<string>): string {
  const tail = `${r.stderr ?? ""}${r.error ? String(r.error) : ""}`
    .trim()
    .split("\n")
    .filter((l) => l.trim() && !/npm help|complete log|^npm error\s*$/.test(l))
    .slice(0, 2)
    .join(" | ");
  return `${r.status ?? r.signal}): ${tail || "no output"}`;
}

export interface GatewayProcess {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts the gateway under `wrangler dev` (local D1/R2) and resolves once it answers. */
export async function startGateway(options: {
  port: number;
  vars: Record<string, string>;
  persistTo?: string;
  inspectorPort?: number;
  quiet?: boolean;
}): Promise<GatewayProcess> {
  const args = [
    "dev",
    "--local",
    "--ip",
    "127.0.0.1",
    "--port",
    String(options.port),
    "--show-interactive-dev-session=false",
  ];
  args.push("--inspector-port", String(options.inspectorPort ?? (await freePort())));
  for (const [name, value] of Object.entries(options.vars)) args.push("--var", `${name}:${value}`);
  if (options.persistTo) args.push("--persist-to", options.persistTo);
  const child = spawn(WRANGLER, args, {
    cwd: ROOT,
    env: wranglerEnv,
    stdio: options.quiet ? ["ignore", "ignore", "inherit"] : ["ignore", "inherit", "inherit"],
  });
  const url = `http://127.0.0.1:${options.port}`;
  const stop = () => stopChild(child);
  try {
    await waitForHttp(`${url}/healthz`, child);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, child, stop };
}
