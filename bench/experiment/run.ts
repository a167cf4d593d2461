/**
 * An A/B experiment end to end on the real stack: the backend on the embedded model, the gateway
 * under `wrangler dev`. Through the gateway's admin API it probes, trains a French adapter on the
 * backend, registers it, runs an experiment base vs adapter on French, sends a few hundred French
 * requests from distinct users through the OpenAI API, and prints the experiment's results.
 *
 *   npm run bench:experiment        (EXPERIMENT_REQUESTS=n changes the request count, default 300)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LIVE_PATH } from "../../src/protocol/backend.js";
import { splitPrompts } from "../../src/gpu-backend/lens/jobs/prompts.js";
import {
  ROOT,
  applyMigrations,
  backendSecret,
  freePort,
  registerKeys,
  startGateway,
  waitForHttp,
} from "../../dev/local-stack.js";

const LANGUAGE = "fr";
const REQUESTS = Number(process.env["EXPERIMENT_REQUESTS"] ?? 300);
const CLIENT = "lens-experiment-client-key";
const ADMIN = "lens-experiment-admin-key";

async function main(): Promise<void> {
  const state = mkdtempSync(join(tmpdir(), "lens-experiment-"));
  const backendPort = await freePort();
  const backendUrl = `http://127.0.0.1:${backendPort}`;
  const secret = backendSecret();
  const backend: ChildProcess = spawn(process.execPath, ["--import", "tsx", "src/gpu-backend/server.ts"], {
    cwd: ROOT,
    env: {
      ...process.env,
      BACKEND_PORT: String(backendPort),
      LENS_JOBS_DIR: join(state, "jobs"),
      LENS_BACKEND_SECRET: secret,
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  let stopGateway: (() => Promise<void>) | undefined;
  try {
    await waitForHttp(`${backendUrl}${LIVE_PATH}`, backend, 120_000);
    applyMigrations(state);
    registerKeys({ client: CLIENT, admin: ADMIN }, state);
    const gateway = await startGateway({
      port: await freePort(),
      vars: { BACKEND_URLS: backendUrl, BACKEND_SECRET: secret },
      persistTo: state,
      quiet: true,
    });
    stopGateway = gateway.stop;
    const admin = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${gateway.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const json = (await res.json()) as Record<string, unknown>;
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
      return json;
    };
    const finished = async (id: string) => {
      for (;;) {
        const job = await admin("GET", `/admin/lens/jobs/${id}`);
        const state = (job["state"] ?? (job["job"] as Record<string, unknown> | undefined)?.["state"]) as string;
        if (state === "succeeded") return job;
        if (state === "failed" || state === "cancelled") throw new Error(`job ${id} ${state}: ${JSON.stringify(job)}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    };

    const started = Date.now();
    const probe = await admin("POST", "/admin/lens/jobs", {
      kind: "probe",
      languages: ["en", "fr", "es", "de", "zh"],
      layers: [3],
      prompts: "probe",
      per_language: 200,
    });
    await finished(probe["id"] as string);
    const train = await admin("POST", "/admin/lens/jobs", {
      kind: "train",
      probe: probe["id"],
      language: LANGUAGE,
      rank: 4,
      prompts: "train",
      per_language: 160,
      seed: 1,
    });
    await finished(train["id"] as string);
    const adapter = await admin("POST", `/admin/lens/jobs/${train["id"] as string}/register`);
    const adapterId = (adapter["id"] ?? (adapter["adapter"] as Record<string, unknown> | undefined)?.["id"]) as string;
    console.log(
      `probe + train + register through the gateway: ${((Date.now() - started) / 1000).toFixed(1)} s; adapter ${adapterId}`,
    );
    const experiment = await admin("POST", "/admin/experiments", {
      name: "French: base vs trained Lens adapter",
      languages: [LANGUAGE],
      arms: [
        { name: "control", delta: null, weight: 50 },
        { name: "lens", delta: adapterId, scale: 1, weight: 50 },
      ],
    });
    const experimentId = (experiment["id"] ??
      (experiment["experiment"] as Record<string, unknown> | undefined)?.["id"]) as string;

    // French prompts the adapter never saw (the eval split), each from a different end user.
    const prompts = splitPrompts("eval", ["fr"], 1000)["fr"] ?? [];
    let next = 0;
    let failed = 0;
    const arms = new Map<string, number>();
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < REQUESTS) {
          const i = next++;
          const res = await fetch(`${gateway.url}/v1/chat/completions`, {
            method: "POST",
            headers: { authorization: `Bearer ${CLIENT}`, "content-type": "application/json" },
            body: JSON.stringify({
              model: "lens-tiny-chat",
              temperature: 0,
              max_tokens: 48,
              user: `user-${i}`,
              messages: [{ role: "user", content: prompts[i % prompts.length] }],
            }),
          });
          await res.text();
          if (!res.ok) failed++;
          const arm = res.headers.get("x-lens-arm") ?? "(none)";
          arms.set(arm, (arms.get(arm) ?? 0) + 1);
        }
      }),
    );
    console.log(
      `${REQUESTS} French requests in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${failed} failed; arms seen: ${[...arms].map(([a, n]) => `${a} ${n}`).join(", ")}`,
    );
    // Records are written after each response (waitUntil): give them a moment.
    await new Promise((r) => setTimeout(r, 2000));
    const results = await admin("GET", `/admin/experiments/${experimentId}/results`);
    console.log(JSON.stringify(results, null, 2));
  } finally {
    await stopGateway?.();
    backend.kill("SIGTERM");
    rmSync(state, { recursive: true, force: true });
  }
}

await main();
