/**
 * Real backend processes for the fault matrix (docs/faults.md): `src/gpu-backend/server.ts` spawned
 * as `npm start` runs it, so that a test can SIGKILL it (or stop it) like a crash would, and restart it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { LIVE_PATH, backendAuthorization } from "../../src/protocol/backend.js";
import { freePort, waitForHttp } from "../../dev/local-stack.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const FAULT_SECRET = "fault-matrix-backend-secret";

export interface BackendProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Output of the process so far (for failure messages). */
  output(): string;
  /** The internal API with the shared secret. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** SIGKILL, and wait until the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (a clean stop), and wait until the process is gone. */
  stop(): Promise<void>;
}

export async function startBackendProcess(options: {
  jobsDir: string;
  port?: number;
  env?: Record<string, string>;
}): Promise<BackendProcess> {
  const port = options.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, ["--import", "tsx", "src/gpu-backend/server.ts"], {
    cwd: ROOT,
    env: {
      ...process.env,
      BACKEND_PORT: String(port),
      LENS_JOBS_DIR: options.jobsDir,
      LENS_BACKEND_SECRET: FAULT_SECRET,
      LENS_MAX_BATCH: "8",
      LENS_MAX_QUEUE: "64",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
  const gone = (signal: NodeJS.Signals) => async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill(signal);
    await exited;
  };
  const kill = gone("SIGKILL");
  try {
    await waitForHttp(`${url}${LIVE_PATH}`, child, 120_000);
  } catch (err) {
    await kill();
    throw new Error(`${(err as Error).message}\n${output}`);
  }
  return {
    url,
    port,
    child,
    output: () => output,
    fetch: (path, init = {}) =>
      fetch(`${url}${path}`, {
        ...init,
        headers: {
          authorization: backendAuthorization(FAULT_SECRET),
          ...(init.headers as Record<string, string> | undefined),
        },
      }),
    kill,
    stop: gone("SIGTERM"),
  };
}

/** Reads one gauge or counter from a Prometheus text page. */
export function metric(page: string, name: string): number {
  const line = page.split("\n").find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`no metric ${name}`);
  return Number(line.slice(name.length + 1));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `probe` returns a value (not undefined), or throws after `ms`. */
export async function until<T>(probe: () => Promise<T | undefined>, ms = 30_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} not met within ${ms} ms`);
    await sleep(50);
  }
}
