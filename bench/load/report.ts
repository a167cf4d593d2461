/** Per-level figures from the outcomes, the stdout table, and docs/load.md + docs/load.json. */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { Outcome } from "./client.js";
import { percentile } from "../../dev/percentile.js";

export interface RecordCheck {
  /** Rows in D1 `requests` for this level's ids. */
  rows: number;
  /** Ids the client sent that have no row. */
  missing: number;
  /** Of those, ids the client got an answer for (complete or a clean error): lost by the gateway. */
  missingAnswered: number;
  /** Ids with more than one row, or rows for ids this level never sent. */
  doubled: number;
  /** Rows whose status differs from the status the client received (broken requests aside). */
  statusMismatch: number;
  /** Seconds from the level's last answer until the row count stopped changing. */
  settleS: number;
  sample: string[];
}

export interface LevelResult {
  /** What served the gateway: "wrangler dev" or "workerd" (no dev proxy). */
  front: string;
  concurrency: number;
  sent: number;
  complete: number;
  /** "503 backend_overloaded" -> count; mid-stream errors are "200 stream:<code>". */
  errors: Record<string, number>;
  retryAfter: Record<string, number>;
  broken: number;
  brokenSamples: string[];
  emptyReplies: number;
  wallS: number;
  reqPerS: number;
  tokensPerS: number;
  completionTokens: number;
  ttftMs: { p50: number | null; p99: number | null };
  totalMs: { p50: number | null; p99: number | null };
  /** Counts by the language the gateway chose (x-lens-language). */
  languages: Record<string, number>;
  /** Requests in the experiment's language, by x-lens-arm ("(none)" if missing). */
  arms: Record<string, number>;
  /** Requests by x-lens-delta (delta id or none). */
  deltas: Record<string, number>;
  records: RecordCheck;
}

const bump = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);

export function summarize(
  front: string,
  concurrency: number,
  outcomes: Outcome[],
  wallS: number,
  experimentLanguage: string,
  records: RecordCheck,
): LevelResult {
  const complete = outcomes.filter((o) => o.kind === "complete");
  const errors: Record<string, number> = {};
  const retryAfter: Record<string, number> = {};
  const languages: Record<string, number> = {};
  const arms: Record<string, number> = {};
  const deltas: Record<string, number> = {};
  const brokenSamples = new Map<string, { n: number; min: number; max: number }>();
  for (const o of outcomes) {
    if (o.kind === "error") bump(errors, `${o.status} ${o.errorCode}`);
    if (o.kind === "broken") {
      const b = brokenSamples.get(o.broken ?? "?") ?? { n: 0, min: Infinity, max: 0 };
      brokenSamples.set(o.broken ?? "?", {
        n: b.n + 1,
        min: Math.min(b.min, o.totalMs),
        max: Math.max(b.max, o.totalMs),
      });
    }
    if (o.retryAfter !== null && (o.status === 429 || o.status === 503)) bump(retryAfter, o.retryAfter);
    if (o.status === 200) {
      bump(languages, o.language ?? "(none)");
      bump(deltas, o.delta ?? "(none)");
      if (o.language === experimentLanguage) bump(arms, o.arm ?? "(none)");
    }
  }
  const completionTokens = complete.reduce((s, o) => s + (o.completionTokens ?? 0), 0);
  const ttft = complete.flatMap((o) => (o.ttftMs === null ? [] : [o.ttftMs]));
  const total = complete.map((o) => o.totalMs);
  return {
    front,
    concurrency,
    sent: outcomes.length,
    complete: complete.length,
    errors,
    retryAfter,
    broken: outcomes.length - complete.length - Object.values(errors).reduce((a, b) => a + b, 0),
    brokenSamples: [...brokenSamples].map(
      ([why, b]) => `${b.n}x ${why} (after ${(b.min / 1000).toFixed(1)}-${(b.max / 1000).toFixed(1)} s)`,
    ),
    emptyReplies: complete.filter((o) => o.empty).length,
    wallS,
    reqPerS: complete.length / wallS,
    tokensPerS: completionTokens / wallS,
    completionTokens,
    ttftMs: { p50: percentile(ttft, 50), p99: percentile(ttft, 99) },
    totalMs: { p50: percentile(total, 50), p99: percentile(total, 99) },
    languages,
    arms,
    deltas,
    records,
  };
}

export function recordsOk(r: LevelResult): boolean {
  return r.records.missing === 0 && r.records.doubled === 0;
}

const ms = (v: number | null) =>
  v === null ? "-" : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
const kv = (m: Record<string, number>) =>
  Object.entries(m)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k}: ${n}`)
    .join(", ") || "none";

export function table(results: LevelResult[]): string {
  const head = [
    "gateway",
    "concurrent",
    "sent",
    "complete",
    "clean errors (status code: n)",
    "broken",
    "req/s",
    "tokens/s",
    "TTFT p50 / p99",
    "total p50 / p99",
    "D1 rows / missing / doubled",
    "check",
  ];
  const rows = results.map((r) => [
    r.front,
    String(r.concurrency),
    String(r.sent),
    String(r.complete),
    kv(r.errors),
    String(r.broken),
    r.reqPerS.toFixed(1),
    r.tokensPerS.toFixed(0),
    `${ms(r.ttftMs.p50)} / ${ms(r.ttftMs.p99)}`,
    `${ms(r.totalMs.p50)} / ${ms(r.totalMs.p99)}`,
    `${r.records.rows} / ${r.records.missing} / ${r.records.doubled}`,
    r.broken === 0 && recordsOk(r) ? "ok" : "FAIL",
  ]);
  return [head, head.map(() => "---"), ...rows].map((cells) => `| ${cells.join(" | ")} |`).join("\n");
}

export function mixTable(results: LevelResult[], experimentLanguage: string): string {
  const head = [
    "gateway",
    "concurrent",
    "languages (x-lens-language, 200s)",
    `arms (${experimentLanguage}, x-lens-arm)`,
    "deltas (x-lens-delta)",
    "retry-after on 429/503",
  ];
  const rows = results.map((r) => [
    r.front,
    String(r.concurrency),
    kv(r.languages),
    kv(r.arms),
    kv(r.deltas),
    kv(r.retryAfter),
  ]);
  return [head, head.map(() => "---"), ...rows].map((cells) => `| ${cells.join(" | ")} |`).join("\n");
}

export interface Conditions {
  date: string;
  cores: number;
  cpu: string;
  memoryGiB: number;
  loadAverageStart: number[];
  loadAverageEnd: number[];
  node: string;
  model: { id: string; hidden_size: number; num_layers: number };
  backends: number;
  maxBatch: number;
  maxQueue: number;
  maxTokens: number;
  requestsPerLevel: Record<string, number>;
  note: string | null;
}

/** What the doc says about errors and failures, from what this run saw. */
function notes(results: LevelResult[]): string {
  const out: string[] = [];
  const timeouts = results.filter((r) => Object.keys(r.errors).some((k) => k.includes("backend_timeout")));
  if (timeouts.length > 0) {
    out.push(
      `- \`backend_timeout\` (at ${timeouts.map((r) => `${r.concurrency} through ${r.front}`).join(", ")} concurrent): no answer within the ` +
        "gateway's 30 s (`BACKEND_TIMEOUT_MS` for the response headers: 504; `BACKEND_IDLE_TIMEOUT_MS` between frames once " +
        "streaming: an SSE error event). Clean OpenAI errors; the backends' own bound on queueing (`LENS_MAX_QUEUE_WAIT_MS`, 5 s) " +
        "did not catch these, so the time went elsewhere on the overloaded machine.",
    );
  }
  const devBroken = results.filter((r) => r.front === "wrangler dev" && r.broken > 0);
  const workerdClean = results.filter(
    (r) =>
      r.front === "workerd" && devBroken.some((d) => d.concurrency === r.concurrency) && r.broken === 0 && recordsOk(r),
  );
  if (devBroken.length > 0 && workerdClean.length > 0) {
    out.push(
      `- **wrangler dev vs workerd**: at ${workerdClean.map((r) => r.concurrency).join(" and ")} concurrent, the same gateway bundle, ` +
        "backends and D1/R2 state answered every request cleanly and recorded each exactly once when workerd served it " +
        "alone, while through `wrangler dev` some requests broke before reaching the worker (below). Those failures belong " +
        "to `wrangler dev`'s local proxy (a Durable Object in its own workerd that forwards each request to the worker), which " +
        "a deployed Worker does not have.",
    );
  }
  if (results.some((r) => r.brokenSamples.some((b) => b.includes("restarted mid-request")))) {
    out.push(
      '- "Your worker restarted mid-request" (a 503 with a plain-text body) comes from `wrangler dev`\'s own proxy in front of ' +
        "the worker, not from the gateway: the proxy says it for any POST whose forward to the worker fails. Such requests " +
        "leave no record, so they never reached the gateway's handler.",
    );
  }
  if (results.some((r) => r.brokenSamples.some((b) => b.includes("reused keep-alive")))) {
    out.push(
      '- ECONNRESET "on a reused keep-alive connection, before any response": the connection to `wrangler dev`\'s ' +
        "local server was reset as the client reused it (seen under load, mostly after a 503/504 and the client's " +
        "retry-after pause). Such requests leave neither a line in wrangler's request log nor a record: they never " +
        "reached the gateway. Counted as broken all the same.",
    );
  }
  for (const r of results) {
    if (r.brokenSamples.length > 0)
      out.push(`- Broken at ${r.concurrency} concurrent through ${r.front}: ${r.brokenSamples.join("; ")}.`);
    if (r.records.missing > 0) {
      out.push(
        `- Missing records at ${r.concurrency} concurrent through ${r.front}: ${r.records.missing}, of which ${r.records.missingAnswered} ` +
          `for requests the client got an answer to (the rest broke before any response).`,
      );
    }
    if (r.records.sample.length > 0)
      out.push(`- Records at ${r.concurrency} concurrent through ${r.front}: ${r.records.sample.join("; ")}.`);
  }
  return out.length > 0 ? `${out.join("\n")}\n\n` : "";
}

export function writeDocs(
  mdPath: string,
  jsonPath: string,
  conditions: Conditions,
  results: LevelResult[],
  experimentLanguage: string,
  activeLanguages: string[],
): void {
  writeFileSync(jsonPath, `${JSON.stringify({ conditions, levels: results }, null, 2)}\n`);
  const la = (v: number[]) => v.map((x) => x.toFixed(2)).join(" / ");
  const md = `# Load: mixed-language streaming through the gateway

Generated by \`npm run bench:load\` (bench/load/run.ts); regenerated on each full run, raw numbers in
[load.json](load.json).

## Setup

- The whole local stack, started by the command: two backends on the embedded model
  (\`${conditions.model.id}\`, hidden ${conditions.model.hidden_size}, ${conditions.model.num_layers} layers, CPU),
  each with \`LENS_MAX_BATCH=${conditions.maxBatch}\` and \`LENS_MAX_QUEUE=${conditions.maxQueue}\`; local D1 (migrations
  applied to a temporary directory) and R2; the gateway with \`BACKEND_URLS\` naming both backends,
  served first by **\`wrangler dev\`** (run from a copy of the sources taken at the start, so that an
  edit during the run cannot make it reload the worker mid-load), then, over the same D1/R2 state and
  backends, by **workerd** alone: the bundle \`wrangler deploy\` uploads, run through Miniflare, without
  \`wrangler dev\`'s proxy in front (every request there passes through one Durable Object on its way
  to the worker). Client, gateway and backends share the machine's cores.
- Arms: synthetic seeded adapters (not trained; their effect on the replies is not the point here)
  uploaded through \`POST /admin/adapters\`; ${activeLanguages.join(" and ")} have one active
  (\`PUT /admin/languages\`), and ${experimentLanguage} runs an A/B experiment, \`control\` (base model) vs
  \`lens\` (its adapter), 50/50 by the request's \`user\`. Every request has its own \`user\`.
- Requests: \`POST /v1/chat/completions\` with \`stream: true\`, \`stream_options.include_usage\`,
  \`max_tokens: ${conditions.maxTokens}\`, temperature 0.7, prompts from \`test/fixtures/language-prompts.jsonl\`
  in turn (13 languages; the gateway detects each one), each with its own \`x-request-id\`.
- Levels: a closed loop of N concurrent clients, each sending its next request as soon as the
  previous one ends, until the level's request count is sent
  (${Object.entries(conditions.requestsPerLevel)
    .map(([n, r]) => `${r} at ${n}`)
    .join(", ")}). A client that gets 429/503 waits
  its \`retry-after\` (at most 5 s) before its next request. A short warm-up runs first.
- Outcomes: **complete** (role chunk, content, finish chunk, usage chunk, \`data: [DONE]\`, close),
  **clean error** (non-2xx with an OpenAI error body, a 429/503 without \`retry-after\` marked so; or
  a 200 stream ending in one \`data: {"error": ...}\` event: listed as \`200 stream:<code>\`), or
  **broken** (anything else, network errors and client timeouts included).
- TTFT: from sending the request to the first chunk with non-empty content; total: to the end of
  the stream; both over complete requests. req/s: complete requests per second of the level's
  wall time; tokens/s: their completion tokens (usage) per second.
- Records: after each level, once the gateway's \`waitUntil\` writes settle (the row count stops
  changing), the D1 \`requests\` rows for that level's request ids are counted: **missing** are ids
  the client sent with no row, **doubled** are ids with more than one row or rows for ids the level
  never sent. The command exits non-zero on any missing, doubled or broken request.

## Results

${table(results)}

${mixTable(results, experimentLanguage)}

${notes(results)}## Machine

- ${conditions.date}; ${conditions.cores} cores (${conditions.cpu}), ${conditions.memoryGiB} GiB; Node ${conditions.node}.
- Load average
  (1/5/15 min) ${la(conditions.loadAverageStart)} at the start, ${la(conditions.loadAverageEnd)} at the end.
${conditions.note ? `- ${conditions.note}\n` : ""}`;
  // The soak (bench/load/soak.ts) keeps its own section in the same doc: carried over as it is.
  const previous = existsSync(mdPath) ? readFileSync(mdPath, "utf8") : "";
  const soak = /<!-- soak:start -->[\s\S]*<!-- soak:end -->/.exec(previous)?.[0];
  writeFileSync(mdPath, soak ? `${md}\n${soak}\n` : md);
}
