/**
 * Portkey's AI gateway as the peer. Its npm package holds only the Node build, so that is what runs:
 * installed on first use into .bench-out/portkey/ (ignored, never in package.json), started as
 * `node build/start-server.js --port=N --headless`, and pointed at an OpenAI-style upstream per
 * request with its provider and custom-host headers.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, freePort, npmErrorTail, stopChild, waitForHttp } from "../../dev/local-stack.js";

const VERSION = "1.15.2";
const DIR = join(ROOT, ".bench-out", "portkey");
const PACKAGE = join(DIR, "node_modules", "@portkey-ai", "gateway");
/**
 * Portkey 1.15.2 declares @hono/node-server ^1.3.3, which now resolves to a release whose Response
 * keeps a fetch response's immutable headers; Portkey then fails every stream with "TypeError:
 * immutable" (Portkey-AI/gateway#1389). 1.14.1 is the last release that copies them.
 */
const MANIFEST = {
  private: true,
  dependencies: { "@portkey-ai/gateway": VERSION },
  overrides: { "@hono/node-server": "1.14.1" },
};

/** Portkey's stream handler waits this long before it sends the first chunk; the bench reports it apart. */
export const PORTKEY_STREAM_PAUSE_MS = 25;

const versionOf = (dir: string): string | undefined => {
  try {
    return (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return undefined;
  }
};

/** The installed package's folder and version, installing it first if needed; or why it is not there. */
export function installPortkey(): { dir: string; version: string } | { why: string } {
  const manifest = `${JSON.stringify(MANIFEST, null, 2)}\n`;
  const current = existsSync(join(DIR, "package.json")) ? readFileSync(join(DIR, "package.json"), "utf8") : "";
  if (current !== manifest || versionOf(PACKAGE) !== VERSION) {
    console.error(`[peer] installing @portkey-ai/gateway@${VERSION} into .bench-out/portkey/ (first use, 25 MB) ...`);
    mkdirSync(DIR, { recursive: true });
    writeFileSync(join(DIR, "package.json"), manifest);
    const r = spawnSync("npm", ["install", "--no-audit", "--no-fund", "--no-package-lock"], {
      cwd: DIR,
      encoding: "utf8",
      timeout: 5 * 60_000,
    });
    if (r.status !== 0 || versionOf(PACKAGE) !== VERSION) {
      return { why: `npm install @portkey-ai/gateway@${VERSION} failed (${npmErrorTail(r)}` };
    }
  }
  if (!existsSync(join(PACKAGE, "build", "start-server.js")))
    return { why: "its package has no build/start-server.js" };
  return { dir: PACKAGE, version: VERSION };
}

export interface Portkey {
  port: number;
  pid: number | undefined;
  stop(): Promise<void>;
}

/** Starts Portkey's Node server on a free port; resolves once it answers. */
export async function startPortkey(dir: string): Promise<Portkey> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, ["build/start-server.js", `--port=${port}`, "--headless"], {
    cwd: dir,
    env: { ...process.env, NODE_ENV: "production" },
    // Its request log goes nowhere, as a deployment's would go to a collector, not to this terminal.
    stdio: ["ignore", "ignore", "inherit"],
  });
  const stop = () => stopChild(child);
  try {
    await waitForHttp(`http://127.0.0.1:${port}/`, child);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, pid: child.pid, stop };
}

/** The headers that send a chat request through Portkey to the OpenAI-style upstream at `upstreamUrl`. */
export function portkeyHeaders(upstreamUrl: string): Record<string, string> {
  return {
    "content-type": "application/json",
    "x-portkey-provider": "openai",
    "x-portkey-custom-host": `${upstreamUrl}/v1`,
    // The upstream checks no key; Portkey requires one to forward.
    authorization: "Bearer sk-bench",
  };
}
