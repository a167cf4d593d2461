/**
 * `npm start`: the whole local stack. Applies the D1 migrations to the local database, registers
 * LENS_API_KEY / LENS_ADMIN_KEY (hashed) as the only keys, starts a backend on BACKEND_PORT unless
 * BACKEND_URLS points elsewhere, starts the gateway under `wrangler dev`, and prints a curl to try.
 * Both sides share LENS_BACKEND_SECRET (a random one per run when unset; set it for external backends).
 */
import { type ChildProcess, spawn } from "node:child_process";
import {
  ROOT,
  applyMigrations,
  backendSecret,
  registerKeys,
  startGateway,
  stopChild,
  waitForHttp,
} from "../dev/local-stack.js";
import { LIVE_PATH, MODELS_PATH, ModelsResponse, backendAuthorization } from "../src/protocol/backend.js";

function port(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${name} must be a port number, got '${raw}'`);
  return n;
}

const gatewayPort = port("GATEWAY_PORT", 8787);
const backendPort = port("BACKEND_PORT", 8788);
const clientKey = process.env["LENS_API_KEY"] || "lens-local-client-key";
const adminKey = process.env["LENS_ADMIN_KEY"] || "lens-local-admin-key";
const externalBackends = process.env["BACKEND_URLS"];
const backendUrls = externalBackends || `http://127.0.0.1:${backendPort}`;
// The gateway sends it on every internal call; a local backend gets the same one.
const secret = backendSecret();

const stoppers: Array<() => Promise<void>> = [];
let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    await Promise.allSettled(stoppers.map((s) => s()));
  }
  process.exit(code);
}
process.on("SIGINT", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));

function spawnBackend(entry: string): ChildProcess {
  const child = spawn(process.execPath, ["--import", "tsx", entry], {
    cwd: ROOT,
    env: { ...process.env, BACKEND_PORT: String(backendPort), LENS_BACKEND_SECRET: secret },
    stdio: "inherit",
  });
  stoppers.push(() => stopChild(child));
  child.once("exit", (code) => {
    if (!stopping) {
      console.error(`backend exited with code ${code}`);
      void shutdown(1);
    }
  });
  return child;
}

async function startLocalBackend(): Promise<string> {
  const child = spawnBackend("src/gpu-backend/server.ts");
  await waitForHttp(`${backendUrls}${LIVE_PATH}`, child, 300_000);
  return `the backend on port ${backendPort}, model ${process.env["LENS_MODEL_DIR"] || "models/lens-tiny-chat"}`;
}

/** Gateway variables taken from the environment when set. */
function passThrough(...names: string[]): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const name of names) {
    const value = process.env[name];
    if (value !== undefined && value !== "") vars[name] = value;
  }
  return vars;
}

async function firstModel(): Promise<string> {
  try {
    const first = backendUrls.split(",")[0]?.trim().replace(/\/+$/, "");
    const res = await fetch(`${first}${MODELS_PATH}`, { headers: { authorization: backendAuthorization(secret) } });
    const parsed = ModelsResponse.safeParse(await res.json());
    if (parsed.success && parsed.data.models[0]) return parsed.data.models[0].id;
  } catch {
    // fall through
  }
  return "<model id from GET /v1/models>";
}

async function main(): Promise<void> {
  console.log("Applying D1 migrations to the local database...");
  applyMigrations();
  registerKeys({ client: clientKey, admin: adminKey });
  const backendKind = externalBackends ? `backends at ${externalBackends}` : await startLocalBackend();

  const gateway = await startGateway({
    port: gatewayPort,
    vars: { BACKEND_URLS: backendUrls, BACKEND_SECRET: secret, ...passThrough("RATE_LIMIT_RPM", "RATE_LIMIT_TPM") },
    quiet: true,
  });
  stoppers.push(gateway.stop);
  gateway.child.once("exit", (code) => {
    if (!stopping) {
      console.error(`gateway (wrangler dev) exited with code ${code}`);
      void shutdown(1);
    }
  });
  const model = await firstModel();
  const body = JSON.stringify({
    model,
    messages: [{ role: "user", content: "Habari! Unaweza kunieleza kuhusu mlima Kilimanjaro?" }],
  });
  console.log(`
Lens gateway is up at ${gateway.url}  (behind it: ${backendKind})
Keys for this local stack only: client ${clientKey}, admin ${adminKey}

Try it:
  curl -i ${gateway.url}/v1/chat/completions \\
    -H "Authorization: Bearer ${clientKey}" -H "Content-Type: application/json" \\
    -d '${body}'

Ctrl-C stops everything.`);
}

main().catch(async (err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  await shutdown(1);
});
