/**
 * The admin console in a real browser: the gateway runs under `wrangler dev` (local D1/R2) against
 * a stand-in backend; experiments, adapters, languages and request rows are set up through the
 * admin API and SQL, and each view is checked in Debian's Chromium (headless, driven by
 * playwright-core), with a screenshot per view written to test-output/.
 * Skipped when /usr/bin/chromium is absent (`apt-get install chromium`).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ROOT,
  applyMigrations,
  freePort,
  registerKeys,
  startGateway,
  wrangler,
  type GatewayProcess,
} from "../../dev/local-stack.js";
import { makeDelta } from "../../dev/make-delta.js";
import { TEST_MODEL, type TestBackend, startTestBackend } from "../../dev/stand-in-backend.js";

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = existsSync(CHROMIUM);
const ADMIN_KEY = "lens-admin-page-test-key";
const CLIENT_KEY = "lens-client-page-test-key";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const OUT = join(ROOT, "test-output");

let state: string;
let backend: TestBackend;
let gateway: GatewayProcess;
let browser: Browser;
let tab: Page;
const pageErrors: string[] = [];

async function admin(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(gateway.url + path, {
    ...init,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(init.headers ?? {}) },
  });
}
async function adminJson<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await admin(path, {
    method,
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function upload(
  id: string,
  language: "sw" | "fr",
  seed: number,
  metrics?: Record<string, number>,
): Promise<string> {
  const d = makeDelta({ hiddenSize: 8, layers: [2, 3], rank: 2, language, id, seed, ...(metrics ? { metrics } : {}) });
  d.manifest.base_model.id = TEST_MODEL;
  const form = new FormData();
  form.set("manifest", JSON.stringify(d.manifest));
  form.set("tensors", new File([d.bytes], "delta.safetensors"));
  const up = await admin("/admin/adapters", { method: "POST", body: form });
  expect(up.status).toBe(201);
  return ((await up.json()) as { id: string }).id;
}

/**
 * `n` request rows made in SQL (a recursive CTE), spread over the last 24 hours. Each column is an
 * SQL expression of the row number i (0-based).
 */
function rowsSql(o: {
  prefix: string;
  n: number;
  language: string;
  experiment: string | null;
  arm: string | null;
  delta: string | null;
  ms: string;
  match: string;
  status: string;
  now: number;
}): string {
  const q = (s: string | null) => (s === null ? "NULL" : `'${s}'`);
  return `INSERT INTO requests (id, key_id, language, experiment_id, arm, delta_id, model, status, ttft_ms, total_ms, prompt_tokens, completion_tokens,
      finish_reason, reply_language, language_match, stream, created_at, feedback_score, feedback_at)
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${o.n - 1})
    SELECT '${o.prefix}-' || i, 'key_local_client', '${o.language}', ${q(o.experiment)}, ${q(o.arm)}, ${q(o.delta)}, '${TEST_MODEL}', ${o.status},
      (${o.ms}) / 4, ${o.ms}, 10, 20, CASE WHEN (${o.status}) = 200 THEN 'stop' ELSE 'error' END, '${o.language}', ${o.match}, 0,
      ${o.now} - (i % 24) * 3600 - (i % 7) * 60,
      CASE WHEN i % 4 = 0 THEN (i / 4) % 2 ELSE NULL END, CASE WHEN i % 4 = 0 THEN ${o.now} ELSE NULL END
    FROM n;`;
}

/** Waits for a selector to show the text (the page loads its data asynchronously). */
async function textOf(selector: string): Promise<string> {
  await tab.waitForSelector(selector);
  return tab.innerText(selector);
}

/** Waits until the element shows `text` (a view re-renders when another item is chosen). */
async function waitForText(selector: string, text: string): Promise<void> {
  await tab.locator(selector, { hasText: text }).first().waitFor();
}

async function screenshot(name: string): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  await tab.screenshot({ path: join(OUT, name), fullPage: true });
}

const title = hasChromium
  ? "admin console in headless Chromium"
  : `admin console in headless Chromium (skipped: ${CHROMIUM} is absent; apt-get install chromium)`;

describe.skipIf(!hasChromium)(title, () => {
  const ids: Record<string, string> = {};
  let frChatArm = "";

  beforeAll(async () => {
    state = mkdtempSync(join(tmpdir(), "lens-admin-page-"));
    backend = await startTestBackend("echo");
    applyMigrations(state);
    registerKeys({ client: CLIENT_KEY, admin: ADMIN_KEY }, state);
    gateway = await startGateway({
      port: await freePort(),
      vars: { BACKEND_URLS: backend.url },
      persistTo: state,
      quiet: true,
    });

    // Adapters: two Swahili versions (the second active at 0.8, the first its rollback target), a
    // third "trained" one, and a French one for a guarded experiment.
    ids["sw1"] = await upload("sw-page-1", "sw", 5, { fidelity_base: 0.41, fidelity_edited: 0.78 });
    ids["sw2"] = await upload("sw-page-2", "sw", 6, { fidelity_base: 0.41, fidelity_edited: 0.86, english_kl: 0.004 });
    ids["sw3"] = await upload("sw-page-3", "sw", 7);
    ids["fr"] = await upload("fr-page-1", "fr", 8);
    await adminJson("PUT", "/admin/languages/sw", { adapter: ids["sw1"], scale: 1 });
    await adminJson("PUT", "/admin/languages/sw", { adapter: ids["sw2"], scale: 0.8 });

    const experiment = async (
      name: string,
      language: string,
      arms: { name: string; delta: string | null }[],
      guardrails?: unknown[],
    ) =>
      (
        await adminJson<{ id: string }>("POST", "/admin/experiments", {
          name,
          languages: [language],
          arms: arms.map((a) => ({ ...a, weight: 1 })),
          ...(guardrails ? { guardrails } : {}),
        })
      ).id;
    ids["swExp"] = await experiment(
      "Swahili lens v3",
      "sw",
      [
        { name: "control", delta: null },
        { name: "lens-sw", delta: ids["sw3"]! },
      ],
      [{ metric: "error_rate" }, { metric: "p95_latency", margin_ms: 50 }],
    );
    ids["koExp"] = await experiment("Korean base vs base", "ko", [
      { name: "control", delta: null },
      { name: "copy", delta: null },
    ]);
    ids["frExp"] = await experiment(
      "French lens (guarded)",
      "fr",
      [
        { name: "control", delta: null },
        { name: "lens-fr", delta: ids["fr"]! },
      ],
      [{ metric: "error_rate" }],
    );

    const now = Math.floor(Date.now() / 1000);
    const sql = [
      // Swahili: control 55% fidelity, lens 86%; the lens arm fails 2%, the control 1%.
      rowsSql({
        prefix: "sw-c",
        n: 600,
        language: "sw",
        experiment: ids["swExp"]!,
        arm: "control",
        delta: null,
        ms: "180 + (i * 37) % 120",
        match: "i % 100 < 55",
        status: "CASE WHEN i % 100 = 0 THEN 502 ELSE 200 END",
        now,
      }),
      rowsSql({
        prefix: "sw-l",
        n: 620,
        language: "sw",
        experiment: ids["swExp"]!,
        arm: "lens-sw",
        delta: "sw-page-3",
        ms: "210 + (i * 37) % 120",
        match: "i % 100 < 86",
        status: "CASE WHEN i % 50 = 0 THEN 502 ELSE 200 END",
        now,
      }),
      // Korean: one arm lost about 30% of its records: a sample-ratio mismatch.
      rowsSql({
        prefix: "ko-c",
        n: 700,
        language: "ko",
        experiment: ids["koExp"]!,
        arm: "control",
        delta: null,
        ms: "150 + i % 90",
        match: "i % 10 < 6",
        status: "200",
        now,
      }),
      rowsSql({
        prefix: "ko-x",
        n: 500,
        language: "ko",
        experiment: ids["koExp"]!,
        arm: "copy",
        delta: null,
        ms: "150 + i % 90",
        match: "i % 10 < 8",
        status: "200",
        now,
      }),
      // French: the lens arm fails 30% of its requests.
      rowsSql({
        prefix: "fr-c",
        n: 300,
        language: "fr",
        experiment: ids["frExp"]!,
        arm: "control",
        delta: null,
        ms: "200 + i % 80",
        match: "i % 10 < 7",
        status: "200",
        now,
      }),
      rowsSql({
        prefix: "fr-l",
        n: 300,
        language: "fr",
        experiment: ids["frExp"]!,
        arm: "lens-fr",
        delta: "fr-page-1",
        ms: "230 + i % 80",
        match: "i % 10 < 8",
        status: "CASE WHEN i % 10 < 3 THEN 502 ELSE 200 END",
        now,
      }),
      // Other traffic outside experiments: German on the base model, Japanese edited.
      rowsSql({
        prefix: "de",
        n: 400,
        language: "de",
        experiment: null,
        arm: null,
        delta: null,
        ms: "120 + (i * 13) % 200",
        match: "i % 10 < 9",
        status: "200",
        now,
      }),
      rowsSql({
        prefix: "ja",
        n: 300,
        language: "ja",
        experiment: null,
        arm: null,
        delta: "ja-x",
        ms: "260 + (i * 11) % 300",
        match: "i % 10 < 7",
        status: "200",
        now,
      }),
      // The third Swahili adapter came from a Lens training job.
      `INSERT INTO lens_jobs (id, backend_url, model, kind, created_at, created_by, adapter_id) VALUES ('job-page-1', '${backend.url}', '${TEST_MODEL}', 'train', ${now}, 'key_local_admin', '${ids["sw3"]}');`,
    ];
    wrangler(["d1", "execute", "DB", "--local", "--command", sql.join("\n")], state);

    // One French chat: its record's guardrail check (nobody has checked yet) stops the experiment.
    const chat = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${CLIENT_KEY}`, "content-type": "application/json", "x-lens-language": "fr" },
      body: JSON.stringify({
        model: TEST_MODEL,
        user: "someone",
        messages: [{ role: "user", content: "Bonjour, pouvez-vous m'aider ?" }],
      }),
    });
    expect(chat.status).toBe(200);
    await chat.text();
    frChatArm = chat.headers.get("x-lens-arm") ?? "";
    for (let i = 0; i < 100; i++) {
      const e = await adminJson<{ state: string }>("GET", `/admin/experiments/${ids["frExp"]}`);
      if (e.state === "stopped") break;
      await new Promise((r) => setTimeout(r, 100));
    }

    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    tab = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    tab.on("pageerror", (e) => pageErrors.push(String(e)));
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await gateway?.stop();
    await backend?.close();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  it("asks for a key, keeps it out of the URL, and the API stays closed without it", async () => {
    expect((await fetch(`${gateway.url}/admin/experiments`)).status).toBe(401);
    const page = await fetch(`${gateway.url}/admin`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    await tab.goto(`${gateway.url}/admin`);
    expect(await tab.isVisible("#tabs")).toBe(false);
    await tab.fill("#key", ADMIN_KEY);
    await tab.click("#use-key");
    await tab.waitForSelector("#fidelity-chart rect.bar");
    expect(tab.url()).not.toContain(ADMIN_KEY);
    expect(await tab.evaluate<string | null>('sessionStorage.getItem("lens-admin-key")')).toBe(ADMIN_KEY);
  });

  it("experiments: sequential verdict beside the fixed-horizon figures, the sample-ratio check and the guardrails", async () => {
    // The newest experiment (French) is listed first; pick the Swahili one.
    await tab.click(`tr.exp[data-id="${ids["swExp"]}"]`);
    await waitForText("#results h2", "Swahili lens v3");
    const bars = await tab.$$eval("#fidelity-chart rect.bar", (els) => els.map((e) => e.getAttribute("data-arm")));
    expect(bars).toEqual(["control", "lens-sw"]);
    const results = await textOf("#results");
    // 330/600 = 55.0%; lens 6 x 86 + 20 = 536/620 = 86.5%; +31.5 pp.
    expect(results).toContain("55.0% (330/600)");
    expect(results).toContain("86.5% (536/620)");
    expect(results).toContain("+31.5 pp");
    expect(results).toContain("Sample ratio OK");
    expect(await tab.innerText('.verdict-block[data-arm="lens-sw"]')).toMatch(
      /better[\s\S]*Always-valid 95% CI[\s\S]*Fixed-horizon \(one look at a planned size only\): 95% CI/,
    );
    const guardrails = await textOf("#guardrail-table");
    expect(await tab.innerText('#guardrail-table tr[data-metric="error_rate"]')).toContain("ok");
    // 600 control requests do not yet bound the control's p95 from above at this alpha.
    expect(await tab.innerText('#guardrail-table tr[data-metric="p95_latency"]')).toContain("waiting");
    expect(guardrails).toContain("+50 ms");
    expect(await tab.innerText('#comparison-table tr[data-arm="lens-sw"][data-metric="fidelity"]')).toContain(
      "significant",
    );
    await screenshot("admin-experiments.png");

    // The Korean experiment: its sample ratio is off, so its verdict is not to be trusted.
    await tab.click(`tr.exp[data-id="${ids["koExp"]}"]`);
    await waitForText("#srm", "Sample-ratio mismatch");
    expect(await tab.innerText("#srm")).toContain("no verdict below can be trusted");
    expect(await tab.innerText('.verdict-block[data-arm="copy"]')).toContain("untrusted");
    await screenshot("admin-experiment-srm.png");

    // The French one was stopped by its error-rate guardrail after a chat's record was written.
    await tab.click(`tr.exp[data-id="${ids["frExp"]}"]`);
    await waitForText("#results h2", "French lens (guarded)");
    const stop = await textOf("#stop-reason");
    expect(stop).toContain("guardrail");
    // 90 of the 300 seeded lens requests failed (and the chat itself succeeded, in one arm or the other).
    expect(frChatArm).toMatch(/^(control|lens-fr)$/);
    expect(stop).toContain(`lens-fr: error rate ${frChatArm === "lens-fr" ? "29.90" : "30.00"}% vs control 0.00%`);
    expect(await tab.innerText(`tr.exp[data-id="${ids["frExp"]}"]`)).toContain("stopped");
    await screenshot("admin-experiment-stopped.png");
  });

  it("languages: active delta and scale, rollback target, recorded evaluation figures", async () => {
    await tab.click("#tab-languages");
    const sw = await textOf('#language-table tr[data-language="sw"]');
    expect(sw).toContain("sw-page-2");
    expect(sw).toContain("× 0.8");
    expect(sw).toContain("fidelity_edited 0.86");
    expect(sw).toContain("english_kl 0.004");
    expect(sw).toContain("sw-page-1");
    expect(sw).toContain("fidelity_edited 0.78");
    expect(sw).toContain("Swahili lens v3");
    // Korean has no delta, only an experiment.
    expect(await tab.innerText('#language-table tr[data-language="ko"]')).toContain("base model");
    expect(tab.url()).toMatch(/#languages$/);
    await screenshot("admin-languages.png");
  });

  it("adapters: language, size, hash, source and where each is in use", async () => {
    await tab.click("#tab-adapters");
    await tab.waitForSelector("#adapter-table");
    const row = (id: string) => tab.innerText(`#adapter-table tr[data-adapter="${id}"]`);
    expect(await row(ids["sw2"]!)).toContain("active for sw × 0.8");
    expect(await row(ids["sw1"]!)).toContain("previous for sw × 1");
    const trained = await row(ids["sw3"]!);
    expect(trained).toContain("trained (train job-page-1)");
    expect(trained).toContain("arm lens-sw × 1 of Swahili lens v3 (running)");
    expect(await row(ids["fr"]!)).toContain("not in use");
    expect(await row(ids["sw1"]!)).toContain("uploaded");
    expect(await row(ids["sw1"]!)).toMatch(/[0-9a-f]{12}…/);
    expect(await row(ids["sw1"]!)).toMatch(/\b\d+ B\b/);
    await screenshot("admin-adapters.png");
  });

  it("traffic: hourly requests, fidelity and p95 per language, base vs edited", async () => {
    await tab.click("#tab-traffic");
    await tab.waitForSelector(".lang-card");
    const languages = await tab.$$eval(".lang-card", (els) => els.map((e) => e.getAttribute("data-language")));
    // By request count: sw 1,220 (+ none), ko 1,200, fr 600 + the one chat, de 400, ja 300.
    expect(languages).toEqual(["sw", "ko", "fr", "de", "ja"]);
    expect(await tab.innerText('.lang-card[data-language="de"] h3')).toContain(
      "400 requests · fidelity base 90.0%, edited n/a",
    );
    expect(await tab.innerText('.lang-card[data-language="ja"] h3')).toContain("fidelity base n/a, edited 70.0%");
    // Swahili has both: base (the control arm) and edited (the lens arm) bars, and two lines per chart.
    expect(await tab.$$eval('.lang-card[data-language="sw"] svg.requests rect.bar.base', (els) => els.length)).toBe(24);
    expect(await tab.$$eval('.lang-card[data-language="sw"] svg.requests rect.bar.edited', (els) => els.length)).toBe(
      24,
    );
    expect(await tab.$$eval('.lang-card[data-language="sw"] svg.latency polyline', (els) => els.length)).toBe(2);
    expect(
      await tab.$$eval('.lang-card[data-language="de"] svg.fidelity polyline', (els) =>
        els.map((e) => e.getAttribute("class")),
      ),
    ).toEqual(["line base"]);
    await screenshot("admin-traffic.png");
    await tab.click("#hours-168");
    await waitForText(".legend", "last 168 hours");
    expect(pageErrors).toEqual([]);
  });
});

describe("admin page HTML", () => {
  it("is self-contained and never puts the key in a URL", async () => {
    const { ADMIN_PAGE_HTML } = await import("../../src/gateway/admin-page/page.js");
    expect(ADMIN_PAGE_HTML).not.toMatch(/\b(src|href)\s*=/i);
    expect(ADMIN_PAGE_HTML).not.toMatch(/<form\b/i);
    expect(ADMIN_PAGE_HTML).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect(ADMIN_PAGE_HTML).toContain("sessionStorage.setItem(KEY_NAME");
    expect(ADMIN_PAGE_HTML).toContain('authorization: "Bearer "');
    // The script is valid JavaScript as served.
    const script = ADMIN_PAGE_HTML.slice(ADMIN_PAGE_HTML.indexOf("<script>") + 8, ADMIN_PAGE_HTML.indexOf("</script>"));
    expect(() => new Function(script)).not.toThrow();
  });
});
