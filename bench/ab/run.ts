/**
 * A/B results at scale: local D1 (under `wrangler dev`) is filled with AB_ROWS request records
 * (default 1,000,000) of one running experiment, spread over four languages and the last 7 days,
 * then the admin endpoints the console calls are timed: the experiment's results JSON (grouped
 * queries and indexed rank lookups, no row read into the isolate), hourly traffic over 24 hours
 * and 7 days, and the registry; with Chromium present, also the console itself until the
 * experiment's view and the traffic view have rendered. One table; times are medians of AB_REPEAT
 * runs (default 5) with min and max.
 *
 *   npm run bench:ab            (AB_ROWS=n, AB_REPEAT=n)
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { applyMigrations, freePort, registerKeys, startGateway, wrangler } from "../../dev/local-stack.js";

const ROWS = Number(process.env["AB_ROWS"] ?? 1_000_000);
const REPEAT = Number(process.env["AB_REPEAT"] ?? 5);
const ADMIN = "lens-ab-bench-admin-key";
const CLIENT = "lens-ab-bench-client-key";
const EXPERIMENT = "ex_ab_bench_0000000001";
const CHROMIUM = "/usr/bin/chromium";

/**
 * The rows, made inside SQLite by a recursive CTE in one statement (nothing crosses a process
 * boundary per row). Arms alternate; the lens arm is edited, a little more faithful, a little
 * slower, and fails a little more often; latencies spread over 100..1099 ms.
 */
function fillSql(now: number): string {
  const arms = JSON.stringify([
    { name: "control", delta: null, delta_id: null, scale: 1, weight: 50 },
    { name: "lens", delta: null, delta_id: null, scale: 1, weight: 50 },
  ]).replace(/'/g, "''");
  const guardrails = JSON.stringify([
    { metric: "error_rate", margin: 0 },
    { metric: "p95_latency", margin_ms: 50 },
    { metric: "feedback_rate", margin: 0, worse: "lower" },
  ]);
  return `
INSERT INTO experiments (id, name, languages, arms, state, guardrails, created_at, created_by, updated_at)
  VALUES ('${EXPERIMENT}', 'bench: ${ROWS} rows', '["sw","fr","de","ja"]', '${arms}', 'running', '${guardrails}', ${now - 7 * 86400}, 'bench', ${now});
INSERT INTO experiment_running (language, experiment_id) VALUES ('sw', '${EXPERIMENT}'), ('fr', '${EXPERIMENT}'), ('de', '${EXPERIMENT}'), ('ja', '${EXPERIMENT}');
INSERT INTO requests (id, key_id, language, experiment_id, arm, delta_id, model, status, ttft_ms, total_ms, prompt_tokens, completion_tokens,
    finish_reason, reply_language, language_match, stream, created_at, feedback_score, feedback_at)
  WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${ROWS - 1})
  SELECT 'b' || i, 'key_local_client',
    CASE (i / 2) % 4 WHEN 0 THEN 'sw' WHEN 1 THEN 'fr' WHEN 2 THEN 'de' ELSE 'ja' END,
    '${EXPERIMENT}', CASE i % 2 WHEN 0 THEN 'control' ELSE 'lens' END, CASE i % 2 WHEN 0 THEN NULL ELSE 'lens-bench' END,
    'lens-test-echo',
    CASE WHEN (i * 7919) % 1000 < 10 + 5 * (i % 2) THEN 502 ELSE 200 END,
    40, 100 + (i * 104729) % 1000 + 20 * (i % 2), 30, 60, 'stop', 'sw',
    CASE WHEN (i * 6151) % 100 < 60 + 8 * (i % 2) THEN 1 ELSE 0 END, 0,
    ${now} - (i * 604799) / ${ROWS},
    CASE WHEN (i * 3571) % 10 = 0 THEN 1 ELSE NULL END, NULL
  FROM n;`;
}

interface Row {
  what: string;
  median: number;
  min: number;
  max: number;
  note: string;
}

async function timed(what: string, note: string, run: () => Promise<void>): Promise<Row> {
  await run(); // one warm-up: the first call pays for compiling and paging in
  const times: number[] = [];
  for (let i = 0; i < REPEAT; i++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { what, median: times[Math.floor(times.length / 2)]!, min: times[0]!, max: times[times.length - 1]!, note };
}

async function main(): Promise<void> {
  const state = mkdtempSync(join(tmpdir(), "lens-ab-bench-"));
  let stop: (() => Promise<void>) | undefined;
  try {
    applyMigrations(state);
    registerKeys({ client: CLIENT, admin: ADMIN }, state);
    const t0 = performance.now();
    wrangler(["d1", "execute", "DB", "--local", "--command", fillSql(Math.floor(Date.now() / 1000))], state);
    const fillS = (performance.now() - t0) / 1000;
    console.log(
      `filled ${ROWS.toLocaleString("en-US")} request rows in ${fillS.toFixed(1)} s (one INSERT ... SELECT over a recursive CTE, indexes included)`,
    );

    const gateway = await startGateway({
      port: await freePort(),
      vars: { BACKEND_URLS: "http://127.0.0.1:9" },
      persistTo: state,
      quiet: true,
    });
    stop = gateway.stop;
    const get = async (path: string) => {
      const res = await fetch(gateway.url + path, { headers: { authorization: `Bearer ${ADMIN}` } });
      const body = await res.text();
      if (!res.ok) throw new Error(`${path}: ${res.status} ${body}`);
      return body;
    };
    const results = JSON.parse(await get(`/admin/experiments/${EXPERIMENT}/results`)) as {
      arms: { arm: string; requests: number; latency: { p95_ms: number } }[];
      srm: { p_value: number };
    };
    const counted = results.arms.reduce((n, a) => n + a.requests, 0);
    if (counted !== ROWS) throw new Error(`results counted ${counted} rows, expected ${ROWS}`);

    const rows: Row[] = [];
    rows.push(
      await timed(
        "GET /admin/experiments/{id}/results",
        `${ROWS.toLocaleString("en-US")} rows, 2 arms, 3 guardrails`,
        async () => void (await get(`/admin/experiments/${EXPERIMENT}/results`)),
      ),
    );
    rows.push(
      await timed(
        "GET /admin/traffic?hours=24",
        "4 languages x base/edited, hourly",
        async () => void (await get("/admin/traffic?hours=24")),
      ),
    );
    rows.push(
      await timed(
        "GET /admin/traffic?hours=168",
        "every row (7 days)",
        async () => void (await get("/admin/traffic?hours=168")),
      ),
    );
    rows.push(
      await timed("GET /admin/registry", "languages and adapters", async () => void (await get("/admin/registry"))),
    );
    rows.push(
      await timed(
        "GET /admin (the page)",
        "static HTML",
        async () => void (await fetch(`${gateway.url}/admin`).then((r) => r.text())),
      ),
    );

    if (existsSync(CHROMIUM)) {
      const { chromium } = await import("playwright-core");
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
      });
      try {
        const tab = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        await tab.goto(`${gateway.url}/admin`);
        await tab.fill("#key", ADMIN);
        await tab.click("#use-key");
        await tab.waitForSelector("#arm-table");
        rows.push(
          await timed("console: load to experiment results shown", "Chromium, reload until #arm-table", async () => {
            await tab.goto(`${gateway.url}/admin#experiments`);
            await tab.reload();
            await tab.waitForSelector("#arm-table");
          }),
        );
        rows.push(
          await timed("console: load to 24 h traffic charts shown", "Chromium, reload until the charts", async () => {
            await tab.goto(`${gateway.url}/admin#traffic`);
            await tab.reload();
            await tab.waitForSelector(".lang-card svg.latency");
          }),
        );
      } finally {
        await browser.close();
      }
    } else {
      console.log(`(${CHROMIUM} is absent: the console rows are left out)`);
    }

    const w = Math.max(...rows.map((r) => r.what.length));
    console.log(`\n${"what".padEnd(w)} | median ms | min ms | max ms | note`);
    console.log(`${"-".repeat(w)}-|-----------|--------|--------|-----`);
    for (const r of rows) {
      console.log(
        `${r.what.padEnd(w)} | ${r.median.toFixed(0).padStart(9)} | ${r.min.toFixed(0).padStart(6)} | ${r.max.toFixed(0).padStart(6)} | ${r.note}`,
      );
    }
    console.log(
      `\np95 per arm: ${results.arms.map((a) => `${a.arm} ${a.latency.p95_ms} ms`).join(", ")}; SRM p = ${results.srm.p_value.toFixed(3)}`,
    );
  } finally {
    await stop?.();
    rmSync(state, { recursive: true, force: true });
  }
}

await main();
