/**
 * A soak of the whole local stack for requests that wait on other requests' work (a gateway that
 * wedges): mixed-language traffic, streaming and not, with one client in ten hanging up early,
 * while operators probe, train, register and activate adapters through the admin API; then a
 * quiet spell past every cache's lifetime, one more registration, and probes of `/v1/models` and
 * chat every 10 s for 90 s. Each run, under `wrangler dev` and then in workerd alone (same bundle,
 * backends and D1/R2 state), must show:
 *
 *   - every request the client did not hang up on answered (complete or a clean OpenAI error)
 *     within BACKEND_TIMEOUT_MS + 5 s;
 *   - every probe answered within 10 s;
 *   - exactly one record per answered request.
 *
 *   npm run bench:soak
 *
 * Environment: SOAK_RUNS (3 per front), SOAK_GATEWAY (wrangler,workerd), SOAK_REQUESTS (480 per
 * run), SOAK_CONCURRENCY (8), SOAK_QUIET_S (70: past the catalog's 60 s), SOAK_PROBE_S (90),
 * SOAK_WRITE_DOCS (1 by default: the soak section of docs/load.md and docs/soak.json). Exits 1 on
 * any failed criterion.
 */
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { type Outcome, resetConnections, streamChat } from "./client.js";
import { type Prompt, loadPrompts } from "./prompts.js";
import { checkRecords } from "./records.js";
import type { RecordCheck } from "./report.js";
import {
  CLIENT_KEY,
  type Stack,
  admin,
  gatewayLogLines,
  gatewayLogTail,
  runWithStack,
  setUpArms,
  startStack,
  switchToWorkerd,
  uploadAdapter,
} from "./stack.js";
import type { Language } from "../../src/protocol/languages.js";
import { sql } from "../../dev/local-stack.js";

const RUNS = Number(process.env["SOAK_RUNS"] || 3);
const FRONTS = (process.env["SOAK_GATEWAY"] || "wrangler,workerd").split(",").map((s) => s.trim());
const REQUESTS = Number(process.env["SOAK_REQUESTS"] || 480);
const CONCURRENCY = Number(process.env["SOAK_CONCURRENCY"] || 8);
const QUIET_S = Number(process.env["SOAK_QUIET_S"] || 70);
const PROBE_S = Number(process.env["SOAK_PROBE_S"] || 90);
const PROBE_EVERY_S = 10;
const WRITE_DOCS = process.env["SOAK_WRITE_DOCS"] !== "0";
/** The gateway's BACKEND_TIMEOUT_MS (wrangler.toml's default, which the stack keeps). */
const BACKEND_TIMEOUT_MS = 30_000;
const ANSWER_BOUND_MS = BACKEND_TIMEOUT_MS + 5_000;
const PROBE_BOUND_MS = 10_000;
const MAX_TOKENS = 24;
/** Pairs of languages operators train per run, in turn (fr, sw and es already carry arms). */
const TRAIN_PAIRS: [Language, Language][] = [
  ["de", "ru"],
  ["zh", "hi"],
  ["ja", "ko"],
  ["ar", "bn"],
  ["th", "de"],
  ["ru", "zh"],
];

const HUNG = /code had hung/i;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A small seeded generator, so that who hangs up, and when, is the same in every run. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Timed {
  what: string;
  ms: number;
  ok: boolean;
  detail?: string;
}

async function timed(what: string, bound: number, f: () => Promise<unknown>): Promise<Timed> {
  const t0 = performance.now();
  try {
    await Promise.race([f(), sleep(bound).then(() => Promise.reject(new Error(`no answer within ${bound} ms`)))]);
    return { what, ms: performance.now() - t0, ok: true };
  } catch (err) {
    return { what, ms: performance.now() - t0, ok: false, detail: err instanceof Error ? err.message : String(err) };
  }
}

interface RunResult {
  front: string;
  run: number;
  sent: number;
  complete: number;
  cleanErrors: Record<string, number>;
  broken: string[];
  hungUp: number;
  hungUpRecorded: number;
  slowestAnsweredMs: number;
  overBound: number;
  records: RecordCheck;
  operators: Timed[];
  probes: Timed[];
  probeRecords: RecordCheck;
  /** workerd's "code had hung" reports in the gateway's output during the run. */
  hungReports: number;
  ok: boolean;
}

/** Traffic: CONCURRENCY clients in a closed loop; every 4th request not streamed, every 10th hung up on. */
async function traffic(
  stack: Stack,
  prompts: Prompt[],
  prefix: string,
  model: string,
  seed: number,
): Promise<Outcome[]> {
  const url = new URL("/v1/chat/completions", stack.gatewayUrl);
  const rand = seeded(seed);
  const hangUps = Array.from({ length: REQUESTS }, () => 50 + Math.floor(rand() * 1500));
  const outcomes: Outcome[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < REQUESTS) {
        const i = next++;
        const prompt = prompts[i % prompts.length]!;
        const stream = i % 4 !== 3;
        const outcome = await streamChat({
          url,
          apiKey: CLIENT_KEY,
          id: `${prefix}-${i}`,
          promptLanguage: prompt.lang,
          timeoutMs: 120_000,
          ...(i % 10 === 9 ? { hangUpAfterMs: hangUps[i]! } : {}),
          body: {
            model,
            ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
            max_tokens: MAX_TOKENS,
            temperature: 0.7,
            seed: i,
            user: `${prefix}-user-${i}`,
            messages: [{ role: "user", content: prompt.text }],
          },
        });
        outcomes.push(outcome);
        if (outcome.kind === "error" && (outcome.status === 429 || outcome.status === 503)) {
          const s = Number(outcome.retryAfter);
          await sleep(Math.min(5, Number.isFinite(s) && s > 0 ? s : 1) * 1000);
        }
      }
    }),
  );
  return outcomes;
}

async function waitForJob(stack: Stack, id: string): Promise<void> {
  for (;;) {
    const job = await admin(stack, "GET", `/admin/lens/jobs/${id}`);
    const state = job["state"] as string;
    if (state === "succeeded") return;
    if (state === "failed" || state === "cancelled")
      throw new Error(`job ${id} ${state}: ${JSON.stringify(job["error"] ?? job).slice(0, 200)}`);
    await sleep(500);
  }
}

/** Operators at work during the traffic: probe, train two languages, register and activate each. */
async function operators(stack: Stack, pair: [Language, Language], seed: number): Promise<Timed[]> {
  const steps: Timed[] = [];
  const step = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    let value: T | undefined;
    const t = await timed(what, ANSWER_BOUND_MS, async () => {
      value = await f();
    });
    steps.push(t);
    if (!t.ok) throw new Error(`${what}: ${t.detail}`);
    return value as T;
  };
  try {
    const top = stack.health.num_layers - 1;
    const probe = await step("submit probe", () =>
      admin(stack, "POST", "/admin/lens/jobs", {
        kind: "probe",
        languages: ["en", ...pair],
        layers: [top],
        per_language: 60,
      }),
    );
    await waitForJob(stack, probe["id"] as string);
    for (const language of pair) {
      const train = await step(`submit train ${language}`, () =>
        admin(stack, "POST", "/admin/lens/jobs", {
          kind: "train",
          probe: probe["id"],
          language,
          per_language: 60,
          seed,
        }),
      );
      await waitForJob(stack, train["id"] as string);
      const adapter = await step(`register ${language}`, () =>
        admin(stack, "POST", `/admin/lens/jobs/${train["id"] as string}/register`),
      );
      await step(`activate ${language}`, () =>
        admin(stack, "PUT", `/admin/languages/${language}`, { adapter: adapter["id"], scale: 1 }),
      );
    }
  } catch (err) {
    if (!steps.some((s) => !s.ok))
      steps.push({ what: "operators", ms: 0, ok: false, detail: err instanceof Error ? err.message : String(err) });
  }
  return steps;
}

/** After the quiet spell: `/v1/models` and one streamed chat every PROBE_EVERY_S for PROBE_S. */
async function probes(
  stack: Stack,
  prompts: Prompt[],
  prefix: string,
  model: string,
): Promise<{ timings: Timed[]; chats: Outcome[] }> {
  const timings: Timed[] = [];
  const chats: Outcome[] = [];
  const url = new URL("/v1/chat/completions", stack.gatewayUrl);
  const t0 = performance.now();
  for (let k = 0; performance.now() - t0 <= PROBE_S * 1000; k++) {
    const tick = performance.now();
    timings.push(
      await timed(`models ${k}`, PROBE_BOUND_MS, async () => {
        const res = await fetch(`${stack.gatewayUrl}/v1/models`, {
          headers: { authorization: `Bearer ${CLIENT_KEY}` },
          signal: AbortSignal.timeout(PROBE_BOUND_MS),
        });
        const body = (await res.json()) as { data?: { id: string }[] };
        if (res.status !== 200 || !body.data?.some((m) => m.id === model)) throw new Error(`status ${res.status}`);
      }),
    );
    const prompt = prompts[k % prompts.length]!;
    const chat = await streamChat({
      url,
      apiKey: CLIENT_KEY,
      id: `${prefix}-${k}`,
      promptLanguage: prompt.lang,
      timeoutMs: PROBE_BOUND_MS,
      body: {
        model,
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: MAX_TOKENS,
        user: `${prefix}-user`,
        messages: [{ role: "user", content: prompt.text }],
      },
    });
    chats.push(chat);
    timings.push({
      what: `chat ${k} (${prompt.lang})`,
      ms: chat.totalMs,
      ok: chat.kind === "complete",
      ...(chat.kind === "complete" ? {} : { detail: `${chat.status} ${chat.errorCode ?? chat.broken}` }),
    });
    await sleep(Math.max(0, PROBE_EVERY_S * 1000 - (performance.now() - tick)));
  }
  return { timings, chats };
}

async function soakRun(stack: Stack, prompts: Prompt[], front: string, run: number, index: number): Promise<RunResult> {
  const model = stack.health.model;
  const tag = `soak-${Date.now().toString(36)}-${front === "workerd" ? "w" : "d"}${run}`;
  resetConnections();
  console.log(`${stack.front}, run ${run}: ${REQUESTS} requests (${CONCURRENCY} at a time) while operators train ...`);
  const pair = TRAIN_PAIRS[index % TRAIN_PAIRS.length]!;
  const hungBefore = gatewayLogLines(HUNG).length;
  const [outcomes, operatorSteps] = await Promise.all([
    traffic(stack, prompts, tag, model, 1000 + index),
    operators(stack, pair, 100 + index),
  ]);
  const records = await checkRecords(stack, tag, outcomes);
  const answered = outcomes.filter((o) => o.kind === "complete" || o.kind === "error");
  const hungUp = outcomes.filter((o) => o.kind === "hung-up");
  const hungUpRecorded =
    hungUp.length === 0
      ? 0
      : (stack.query<{ n: number }>(
          `SELECT COUNT(*) AS n FROM requests WHERE id IN (${hungUp.map((o) => sql(o.id)).join(",")})`,
        )[0]?.n ?? 0);
  const cleanErrors: Record<string, number> = {};
  for (const o of outcomes)
    if (o.kind === "error")
      cleanErrors[`${o.status} ${o.errorCode}`] = (cleanErrors[`${o.status} ${o.errorCode}`] ?? 0) + 1;
  const broken = outcomes.filter((o) => o.kind === "broken").map((o) => `${o.id}: ${o.broken}`);
  const slowest = Math.max(0, ...answered.map((o) => o.totalMs));
  const overBound = answered.filter((o) => o.totalMs > ANSWER_BOUND_MS).length;
  console.log(
    `  traffic: ${outcomes.filter((o) => o.kind === "complete").length} complete, ${answered.length - outcomes.filter((o) => o.kind === "complete").length} clean errors, ` +
      `${broken.length} broken, ${hungUp.length} hung up; slowest answer ${(slowest / 1000).toFixed(1)} s; records ${records.rows} ` +
      `(missing among answered ${records.missingAnswered}, doubled ${records.doubled})`,
  );
  console.log(
    `  operators: ${operatorSteps.map((s) => `${s.what} ${s.ok ? `${(s.ms / 1000).toFixed(1)} s` : `FAILED (${s.detail})`}`).join("; ")}`,
  );

  console.log(`  quiet for ${QUIET_S} s ...`);
  await sleep(QUIET_S * 1000);
  const late: Timed[] = [];
  const extra = pair[0];
  let adapterId = "";
  late.push(
    await timed(
      `upload ${extra}`,
      ANSWER_BOUND_MS,
      async () => (adapterId = await uploadAdapter(stack, extra, 500 + index)),
    ),
  );
  late.push(
    await timed(`activate ${extra}`, ANSWER_BOUND_MS, () =>
      admin(stack, "PUT", `/admin/languages/${extra}`, { adapter: adapterId, scale: 1 }),
    ),
  );
  console.log(
    `  registration after the quiet spell: ${late.map((s) => `${s.what} ${s.ok ? `${(s.ms / 1000).toFixed(2)} s` : `FAILED (${s.detail})`}`).join("; ")}`,
  );
  const probePrefix = `${tag}-probe`;
  const { timings, chats } = await probes(stack, prompts, probePrefix, model);
  const probeRecords = await checkRecords(stack, probePrefix, chats);
  const probeFails = timings.filter((t) => !t.ok || t.ms > PROBE_BOUND_MS);
  console.log(
    `  probes: ${timings.length - probeFails.length}/${timings.length} within ${PROBE_BOUND_MS / 1000} s, slowest ${(Math.max(...timings.map((t) => t.ms)) / 1000).toFixed(2)} s` +
      `${probeFails.length > 0 ? `; failed: ${probeFails.map((t) => `${t.what} ${t.detail ?? `${t.ms.toFixed(0)} ms`}`).join(", ")}` : ""}`,
  );
  const operatorsAll = [...operatorSteps, ...late];
  const hungReports = gatewayLogLines(HUNG).length - hungBefore;
  if (hungReports > 0) console.log(`  the gateway's output reported ${hungReports} hung request(s)`);
  const ok =
    hungReports === 0 &&
    broken.length === 0 &&
    overBound === 0 &&
    records.missingAnswered === 0 &&
    records.doubled === 0 &&
    operatorsAll.every((s) => s.ok) &&
    probeFails.length === 0 &&
    probeRecords.missingAnswered === 0 &&
    probeRecords.doubled === 0;
  return {
    front: stack.front,
    run,
    sent: outcomes.length,
    complete: outcomes.filter((o) => o.kind === "complete").length,
    cleanErrors,
    broken,
    hungUp: hungUp.length,
    hungUpRecorded,
    slowestAnsweredMs: slowest,
    overBound,
    records,
    operators: operatorsAll,
    probes: timings,
    probeRecords,
    hungReports,
    ok,
  };
}

function table(results: RunResult[]): string {
  const rows = results.map((r) => {
    const errors =
      Object.entries(r.cleanErrors)
        .map(([k, n]) => `${n} x ${k}`)
        .join(", ") || "0";
    const probeMax = Math.max(...r.probes.map((p) => p.ms));
    const probeOk = r.probes.filter((p) => p.ok && p.ms <= PROBE_BOUND_MS).length;
    const ops = r.operators.filter((o) => o.ok).length;
    return (
      `| ${r.front} | ${r.run} | ${r.sent} | ${r.complete} | ${errors} | ${r.broken.length} | ${r.hungUp} (${r.hungUpRecorded} recorded) | ` +
      `${(r.slowestAnsweredMs / 1000).toFixed(1)} s | ${r.records.rows}/${r.records.missingAnswered}/${r.records.doubled} | ${ops}/${r.operators.length} | ` +
      `${probeOk}/${r.probes.length}, max ${(probeMax / 1000).toFixed(2)} s | ${r.hungReports} | ${r.ok ? "pass" : "FAIL"} |`
    );
  });
  return [
    '| gateway | run | sent | complete | clean errors | broken | hung up by the client | slowest answer | rows / missing of answered / doubled | operator steps ok | probes within 10 s | "had hung" in the log | result |',
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

const MARK_START = "<!-- soak:start -->";
const MARK_END = "<!-- soak:end -->";

function writeDocs(results: RunResult[], loadStart: number[], loadEnd: number[]): void {
  const docs = (name: string) => fileURLToPath(new URL(`../../docs/${name}`, import.meta.url));
  writeFileSync(docs("soak.json"), `${JSON.stringify({ date: new Date().toISOString(), runs: results }, null, 2)}\n`);
  const la = (v: number[]) => v.map((x) => x.toFixed(2)).join(" / ");
  const section = `${MARK_START}
## Soak: no request waits on another's work

Generated by \`npm run bench:soak\` (bench/load/soak.ts), raw numbers in [soak.json](soak.json).
The same stack as above. Each run: ${REQUESTS} chat requests, ${CONCURRENCY} at a time, the 13 languages in
turn, three in four streamed, and one in ten hung up on by its client 50 to 1550 ms after sending;
meanwhile an operator probes, trains two languages, registers and activates each through
\`/admin/lens/jobs\` and \`/admin/languages\`. Then ${QUIET_S} s without traffic (the model catalog's
copy is trusted for 60 s), one more adapter upload and activation, and \`GET /v1/models\` plus one
streamed chat every ${PROBE_EVERY_S} s for ${PROBE_S} s. A run passes when every request not hung up on
was answered (complete, or a clean OpenAI error) within \`BACKEND_TIMEOUT_MS\` + 5 s (${ANSWER_BOUND_MS / 1000} s),
every operator call within the same bound, every probe within 10 s, every answered request has
exactly one record, and the gateway's output (wrangler dev's, then workerd's) holds no report of a
request whose code "had hung". Hung-up requests may or may not leave a \`disconnected\` record (a client
that leaves before reading its answer does not hold the request open for one); they are counted apart.

${table(results)}

- ${new Date().toISOString()}; ${os.cpus().length} cores, load average ${la(loadStart)} at the start and ${la(loadEnd)} at the end; client, gateway and two backends share the cores.
${MARK_END}`;
  const path = docs("load.md");
  const current = readFileSync(path, "utf8");
  const start = current.indexOf(MARK_START);
  const end = current.indexOf(MARK_END);
  const next =
    start >= 0 && end > start
      ? current.slice(0, start) + section + current.slice(end + MARK_END.length)
      : `${current.trimEnd()}\n\n${section}\n`;
  writeFileSync(path, next);
}

async function main(): Promise<number> {
  const loadStart = os.loadavg();
  const prompts = loadPrompts();
  console.log("starting two backends and the gateway ...");
  const stack = await startStack({ maxBatch: 32, maxQueue: 256 });
  await setUpArms(stack);
  const results: RunResult[] = [];
  let index = 0;
  for (const front of FRONTS) {
    if (front === "workerd") {
      await switchToWorkerd(stack);
      console.log(`gateway now served by workerd without the dev proxy at ${stack.gatewayUrl}`);
    } else if (front !== "wrangler" || stack.front !== "wrangler dev") {
      throw new Error("SOAK_GATEWAY: wrangler (first) and/or workerd");
    }
    for (let run = 1; run <= RUNS; run++) results.push(await soakRun(stack, prompts, front, run, index++));
  }
  console.log("");
  console.log(table(results));
  if (WRITE_DOCS) {
    writeDocs(results, loadStart, os.loadavg());
    console.log("\nwrote the soak section of docs/load.md and docs/soak.json");
  }
  if (results.some((r) => !r.ok)) {
    console.error(`the gateway's output, last lines:\n${gatewayLogTail()}`);
    console.error("FAIL: see the table");
    return 1;
  }
  return 0;
}

await runWithStack(main);
