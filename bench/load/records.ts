/** The D1 records of a batch of requests, compared with what the client sent and saw. */
import { sql } from "../../dev/local-stack.js";
import type { Outcome } from "./client.js";
import type { RecordCheck } from "./report.js";
import type { Stack } from "./stack.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for the level's rows to stop changing, then compares them with the ids sent. */
export async function checkRecords(stack: Stack, prefix: string, outcomes: Outcome[]): Promise<RecordCheck> {
  const like = sql(`${prefix}-%`);
  const count = () => stack.query<{ n: number }>(`SELECT COUNT(*) AS n FROM requests WHERE id LIKE ${like}`)[0]?.n ?? 0;
  const t0 = performance.now();
  let last = -1;
  let stable = 0;
  for (;;) {
    const n = count();
    if (n === last) stable++;
    else stable = 0;
    last = n;
    // Settled: every id has a row, or the count held still for two polls (a few seconds).
    if (n >= outcomes.length || stable >= 2 || performance.now() - t0 > 90_000) break;
    await sleep(1000);
  }
  const settleS = (performance.now() - t0) / 1000;
  const rows = stack.query<{ id: string; status: number }>(`SELECT id, status FROM requests WHERE id LIKE ${like}`);
  const sent = new Map(outcomes.map((o) => [o.id, o]));
  const seen = new Map<string, number>();
  for (const r of rows) seen.set(r.id, (seen.get(r.id) ?? 0) + 1);
  const sample: string[] = [];
  let missing = 0;
  let doubled = 0;
  let statusMismatch = 0;
  let missingAnswered = 0;
  for (const o of outcomes) {
    if (!seen.has(o.id)) {
      missing++;
      if (o.kind === "complete" || o.kind === "error") missingAnswered++;
      if (sample.length < 5) sample.push(`missing ${o.id} (client saw ${o.status} ${o.kind})`);
    }
  }
  for (const [id, n] of seen) {
    if (n > 1 || !sent.has(id)) {
      doubled++;
      if (sample.length < 10) sample.push(`${n > 1 ? `${n} rows` : "unsent id"} ${id}`);
    }
  }
  for (const r of rows) {
    const o = sent.get(r.id);
    if (o && (o.kind === "complete" || o.kind === "error") && o.status !== r.status) statusMismatch++;
  }
  return { rows: rows.length, missing, missingAnswered, doubled, statusMismatch, settleS, sample };
}
