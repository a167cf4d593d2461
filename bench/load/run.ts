/**
 * Load on the whole local stack: two backends on the embedded model, the gateway under
 * `wrangler dev`, adapters active for some languages and an A/B experiment on another; then
 * mixed-language streaming chat requests at several concurrency levels, every answer classified
 * (complete, clean OpenAI error, broken), and every request's D1 record checked (nothing lost,
 * nothing doubled).
 *
 *   npm run bench:load
 *
 * Environment: LOAD_LEVELS (default 64,256,512), LOAD_REQUESTS (requests per level; default
 * max(400, 2 x level)), LOAD_MAX_TOKENS (24), LENS_MAX_BATCH (32) and LENS_MAX_QUEUE (256) for
 * both backends, LOAD_NOTE (a line for the machine section of the doc), LOAD_GATEWAY_LOG (a file
 * to keep the gateway's output in), LOAD_KEEPALIVE=0 (a new connection per request). The default run rewrites
 * docs/load.md and docs/load.json; a run with LOAD_LEVELS or LOAD_REQUESTS set only prints, unless
 * LOAD_WRITE_DOCS=1. Exits 1 when any request was broken or any record missing or doubled.
 */
import os from "node:os";
import { fileURLToPath } from "node:url";
import { resetConnections, streamChat, type Outcome } from "./client.js";
import { type Conditions, type LevelResult, mixTable, recordsOk, summarize, table, writeDocs } from "./report.js";
import { type Prompt, loadPrompts } from "./prompts.js";
import { checkRecords } from "./records.js";
import {
  CLIENT_KEY,
  type Stack,
  gatewayLogTail,
  runWithStack,
  setUpArms,
  startStack,
  switchToWorkerd,
} from "./stack.js";

const intList = (raw: string) =>
  raw
    .split(",")
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
const LEVELS = intList(process.env["LOAD_LEVELS"] || "64,256,512");
const REQUESTS = process.env["LOAD_REQUESTS"] ? Number(process.env["LOAD_REQUESTS"]) : null;
const MAX_TOKENS = Number(process.env["LOAD_MAX_TOKENS"] || 24);
const MAX_BATCH = Number(process.env["LENS_MAX_BATCH"] || 32);
const MAX_QUEUE = Number(process.env["LENS_MAX_QUEUE"] || 256);
const WRITE_DOCS =
  process.env["LOAD_WRITE_DOCS"] === "1" || (!process.env["LOAD_LEVELS"] && !process.env["LOAD_REQUESTS"]);
const REQUEST_TIMEOUT_MS = 120_000;
/** Which fronts serve the gateway, in turn: wrangler dev, then workerd without the dev proxy. */
const FRONTS = (process.env["LOAD_GATEWAY"] || "wrangler,workerd").split(",").map((s) => s.trim());
if (FRONTS.some((f) => f !== "wrangler" && f !== "workerd") || FRONTS.length === 0)
  throw new Error("LOAD_GATEWAY: a list of wrangler and workerd");
const requestsFor = (n: number) => REQUESTS ?? Math.max(400, 2 * n);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** N clients in a closed loop until `total` requests are sent; ids are `${prefix}-${i}`. */
async function runLevel(
  stack: Stack,
  prompts: Prompt[],
  prefix: string,
  concurrency: number,
  total: number,
  model: string,
): Promise<{ outcomes: Outcome[]; wallS: number }> {
  const url = new URL("/v1/chat/completions", stack.gatewayUrl);
  const outcomes: Outcome[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        const prompt = prompts[i % prompts.length]!;
        const id = `${prefix}-${i}`;
        const outcome = await streamChat({
          url,
          apiKey: CLIENT_KEY,
          id,
          promptLanguage: prompt.lang,
          timeoutMs: REQUEST_TIMEOUT_MS,
          body: {
            model,
            stream: true,
            stream_options: { include_usage: true },
            max_tokens: MAX_TOKENS,
            temperature: 0.7,
            seed: i,
            user: `${prefix}-user-${i}`,
            messages: [{ role: "user", content: prompt.text }],
          },
        });
        if (outcome.kind !== "broken" && outcome.echoedId !== id) {
          outcome.kind = "broken";
          outcome.broken = `x-request-id ${JSON.stringify(outcome.echoedId)} is not the id sent`;
        }
        outcomes.push(outcome);
        if (outcome.kind === "error" && (outcome.status === 429 || outcome.status === 503)) {
          // A well-behaved client honours retry-after before its next request.
          const s = Number(outcome.retryAfter);
          await sleep(Math.min(5, Number.isFinite(s) && s > 0 ? s : 1) * 1000);
        }
      }
    }),
  );
  return { outcomes, wallS: (performance.now() - t0) / 1000 };
}

async function main(): Promise<number> {
  const loadAverageStart = os.loadavg();
  const prompts = loadPrompts();
  console.log(`starting two backends (batch ${MAX_BATCH}, queue ${MAX_QUEUE}) and the gateway ...`);
  const stack = await startStack({ maxBatch: MAX_BATCH, maxQueue: MAX_QUEUE });
  const arms = await setUpArms(stack);
  const model = stack.health.model;
  console.log(
    `gateway ${stack.gatewayUrl} -> ${stack.backendUrls.join(", ")}; active deltas: ${arms.active.map((a) => a.language).join(", ")}; ` +
      `experiment ${arms.experiment.id} on ${arms.experiment.language} (${arms.experiment.arms.join(" vs ")})`,
  );
  const results: LevelResult[] = [];
  for (const front of FRONTS) {
    if (front === "workerd") {
      await switchToWorkerd(stack);
      console.log(`gateway now served by workerd without the dev proxy at ${stack.gatewayUrl}`);
    } else if (stack.front !== "wrangler dev") {
      throw new Error("wrangler dev runs first");
    }
    const runTag = `${Date.now().toString(36)}-${front}`;
    // Warm-up: every language once, deltas pushed to the backends; not counted.
    const warm = await runLevel(stack, prompts, `load-${runTag}-warm`, 8, Math.min(prompts.length, 52), model);
    const warmBad = warm.outcomes.filter((o) => o.kind !== "complete");
    if (warmBad.length > 0)
      console.log(
        `warm-up: ${warmBad.length} not complete, e.g. ${warmBad[0]!.status} ${warmBad[0]!.errorCode ?? warmBad[0]!.broken}`,
      );

    for (const level of LEVELS) {
      const prefix = `load-${runTag}-c${level}`;
      const total = requestsFor(level);
      // Connections left idle by the previous level (and the record check) are not reused.
      resetConnections();
      process.stdout.write(`${stack.front}, level ${level}: ${total} requests ... `);
      const { outcomes, wallS } = await runLevel(stack, prompts, prefix, level, total, model);
      process.stdout.write(`${wallS.toFixed(1)} s; checking records ... `);
      const records = await checkRecords(stack, prefix, outcomes);
      console.log(`${records.rows} rows (settled in ${records.settleS.toFixed(1)} s)`);
      const result = summarize(stack.front, level, outcomes, wallS, arms.experiment.language, records);
      results.push(result);
      if (result.brokenSamples.length > 0) console.log(`  broken: ${result.brokenSamples.slice(0, 8).join("; ")}`);
      if (records.sample.length > 0) console.log(`  records: ${records.sample.join("; ")}`);
      if (records.statusMismatch > 0)
        console.log(`  records: ${records.statusMismatch} rows whose status differs from the one the client got`);
      // Let the backends drain anything a broken client left behind before the next level.
      await sleep(1000);
    }
  }
  const loadAverageEnd = os.loadavg();

  console.log("");
  console.log(table(results));
  console.log("");
  console.log(mixTable(results, arms.experiment.language));
  if (WRITE_DOCS) {
    const conditions: Conditions = {
      date: new Date().toISOString(),
      cores: os.cpus().length,
      cpu: os.cpus()[0]?.model.trim() ?? "unknown",
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      loadAverageStart,
      loadAverageEnd,
      node: process.versions.node,
      model: { id: model, hidden_size: stack.health.hidden_size, num_layers: stack.health.num_layers },
      backends: stack.backendUrls.length,
      maxBatch: MAX_BATCH,
      maxQueue: MAX_QUEUE,
      maxTokens: MAX_TOKENS,
      requestsPerLevel: Object.fromEntries(LEVELS.map((n) => [String(n), requestsFor(n)])),
      note: process.env["LOAD_NOTE"] || null,
    };
    const docs = (name: string) => fileURLToPath(new URL(`../../docs/${name}`, import.meta.url));
    writeDocs(
      docs("load.md"),
      docs("load.json"),
      conditions,
      results,
      arms.experiment.language,
      arms.active.map((a) => a.language),
    );
    console.log("\nwrote docs/load.md and docs/load.json");
  }
  const failed = results.filter((r) => r.broken > 0 || !recordsOk(r));
  if (failed.length > 0) {
    console.error(`the gateway's output, last lines:\n${gatewayLogTail()}`);
    console.error(
      `FAIL at ${failed.map((r) => `${r.concurrency} (${r.front})`).join(", ")} concurrent: broken requests or missing/doubled records`,
    );
    return 1;
  }
  return 0;
}

await runWithStack(main);
