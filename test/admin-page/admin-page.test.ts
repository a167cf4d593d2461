/**
 * The admin page in a real browser: the gateway runs under `wrangler dev` (local D1/R2) against a
 * stand-in backend; an experiment with seeded request rows is shown in Debian's Chromium (headless,
 * driven by playwright-core), and a screenshot is written to test-output/admin-page.png.
 * Skipped when /usr/bin/chromium is absent (`apt-get install chromium`).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, applyMigrations, freePort, registerKeys, startGateway, wrangler, type GatewayProcess } from "../../scripts/local-stack.js";
import { makeDelta } from "../support/make-delta.js";
import { TEST_MODEL, type TestBackend, startTestBackend } from "../support/test-backend.js";

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

let state: string;
let backend: TestBackend;
let gateway: GatewayProcess;

async function admin(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(gateway.url + path, { ...init, headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(init.headers ?? {}) } });
}

/** Request rows for one arm: `n` requests, `matched` of them in the asked language, some feedback. */
function rows(experimentId: string, arm: string, n: number, matched: number, baseMs: number, feedback: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const ms = baseMs + ((i * 37) % 120);
    const score = i < feedback ? (i % 3 === 0 ? 0 : 1) : null;
    out.push(
      `('req-${arm}-${i}', 'key_local_client', 'sw', '${experimentId}', '${arm}', NULL, '${TEST_MODEL}', 200, ${Math.round(ms / 4)}, ${ms}, 10, 20, 'stop', 'sw', ${i < matched ? 1 : 0}, 0, 1764000000, ${score ?? "NULL"}, ${score === null ? "NULL" : 1764000100})`,
    );
  }
  return out;
}

const title = hasChromium ? "admin page in headless Chromium" : `admin page in headless Chromium (skipped: ${CHROMIUM} is absent; apt-get install chromium)`;

describe.skipIf(!hasChromium)(title, () => {
  beforeAll(async () => {
    state = mkdtempSync(join(tmpdir(), "lens-admin-page-"));
    backend = await startTestBackend("echo");
    applyMigrations(state);
    registerKeys({ client: CLIENT_KEY, admin: ADMIN_KEY }, state);
    gateway = await startGateway({ port: await freePort(), vars: { BACKEND_URLS: backend.url }, persistTo: state, quiet: true });
  }, 120_000);

  afterAll(async () => {
    await gateway?.stop();
    await backend?.close();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  it("shows the experiment's arms, numbers and a bar per arm", async () => {
    // An adapter for the treatment arm, then the experiment, then seeded request rows.
    const d = makeDelta({ hiddenSize: 8, layers: [2, 3], rank: 2, language: "sw", id: "sw-page-1", seed: 5 });
    d.manifest.base_model.id = TEST_MODEL;
    const form = new FormData();
    form.set("manifest", JSON.stringify(d.manifest));
    form.set("tensors", new File([d.bytes], "delta.safetensors"));
    const up = await admin("/admin/adapters", { method: "POST", body: form });
    expect(up.status).toBe(201);
    const adapterId = ((await up.json()) as { id: string }).id;
    const created = await admin("/admin/experiments", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        name: "Swahili lens v1",
        languages: ["sw"],
        arms: [
          { name: "control", delta: null, weight: 1 },
          { name: "lens-sw", delta: adapterId, weight: 1 },
        ],
      }),
    });
    expect(created.status).toBe(201);
    const experimentId = ((await created.json()) as { id: string }).id;
    const values = [...rows(experimentId, "control", 120, 66, 180, 30), ...rows(experimentId, "lens-sw", 130, 112, 210, 45)];
    wrangler(["d1", "execute", "DB", "--local", "--command", `INSERT INTO requests VALUES ${values.join(", ")};`], state);
    const results = (await (await admin(`/admin/experiments/${experimentId}/results`)).json()) as { arms: { arm: string; requests: number }[] };
    expect(results.arms.map((a) => [a.arm, a.requests])).toEqual([["control", 120], ["lens-sw", 130]]);

    // Without a key the page is only a form; the API stays closed.
    expect((await fetch(`${gateway.url}/admin/experiments`)).status).toBe(401);
    const page = await fetch(`${gateway.url}/admin`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");

    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const tab = await browser.newPage({ viewport: { width: 1180, height: 900 } });
      const errors: string[] = [];
      tab.on("pageerror", (e) => errors.push(String(e)));
      await tab.goto(`${gateway.url}/admin`);
      await tab.fill("#key", ADMIN_KEY);
      await tab.click("#use-key");
      await tab.waitForSelector("#fidelity-chart rect.bar");
      await tab.waitForSelector("#arm-table");

      expect(tab.url()).not.toContain(ADMIN_KEY);
      expect(await tab.evaluate<string | null>('sessionStorage.getItem("lens-admin-key")')).toBe(ADMIN_KEY);
      const bars = await tab.$$eval("#fidelity-chart rect.bar", (els) => els.map((e) => e.getAttribute("data-arm")));
      expect(bars).toEqual(["control", "lens-sw"]);

      const text = await tab.innerText("body");
      expect(text).toContain("Swahili lens v1");
      expect(text).toContain("control arm · n = 120 measured");
      expect(text).toContain("lens-sw");
      // 66/120 = 55.0%, 112/130 = 86.2%; the difference is +31.2 pp.
      expect(text).toContain("55.0% (66/120)");
      expect(text).toContain("86.2% (112/130)");
      expect(text).toContain("+31.2 pp");
      expect(text).toContain("p < 0.001");
      expect(errors).toEqual([]);

      mkdirSync(join(ROOT, "test-output"), { recursive: true });
      await tab.screenshot({ path: join(ROOT, "test-output", "admin-page.png"), fullPage: true });
    } finally {
      await browser.close();
    }
  }, 120_000);
});

describe("admin page HTML", () => {
  it("is self-contained and never puts the key in a URL", async () => {
    const { ADMIN_PAGE_HTML } = await import("../../src/gateway/admin-page/page.js");
    expect(ADMIN_PAGE_HTML).not.toMatch(/\b(src|href)\s*=/i);
    expect(ADMIN_PAGE_HTML).not.toMatch(/<form\b/i);
    expect(ADMIN_PAGE_HTML).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect(ADMIN_PAGE_HTML).toContain('sessionStorage.setItem(KEY_NAME');
    expect(ADMIN_PAGE_HTML).toContain('authorization: "Bearer "');
  });
});
