import { describe, expect, it } from "vitest";
import { Metrics } from "../../src/gpu-backend/metrics.js";
import type { EngineStats } from "../../src/gpu-backend/generation/engine.js";
import { checkHistogram, parseExposition, total } from "./helpers-exposition.js";

const stats: EngineStats = { running: 0, queued: 0, tokensGenerated: 10, steps: 4, rowSteps: 6 };

describe("backend metrics", () => {
  it("labels known languages by tag and folds anything else into 'other', escaping nothing unsafe into the output", async () => {
    const m = new Metrics();
    m.finished("stop", "sw", 5);
    m.finished("stop", "sw", 5);
    m.finished("stop", 'x"\n', 5);
    m.finished("stop", "qq", 5);
    const text = await m.render(stats, 0);
    expect(text).toContain('lens_backend_requests_by_language_total{language="sw"} 2');
    expect(text).toContain('lens_backend_requests_by_language_total{language="other"} 2');
    expect(text).not.toContain("qq");
    // Every sample line is name{labels} value or name value.
    for (const line of text.trim().split("\n")) {
      if (!line.startsWith("#")) expect(line).toMatch(/^[a-z_]+(\{[^\n]*\})? -?[0-9.e+-]+$/);
    }
  });

  it("serves a valid exposition: typed families, consistent histograms, outcomes that add up to the requests", async () => {
    const m = new Metrics();
    const ttfts = [4, 30, 180, 2600];
    // Six accepted requests end in four ways; two are refused for a full queue.
    for (let i = 0; i < 6; i++) m.accepted();
    m.rejected();
    m.rejected();
    m.finished("stop", "sw", ttfts[0]!, 50);
    m.finished("stop", "en", ttfts[1]!, 400);
    m.finished("length", "fr", ttfts[2]!, 900);
    m.finished("error", "zz", ttfts[3]!, 3000);
    m.finished("cancelled", "sw", 0, 20); // cancelled before its first text: no time to first token
    m.finished("cancelled", "en", 0, 10);
    const families = parseExposition(
      await m.render({ running: 2, queued: 1, tokensGenerated: 120, steps: 10, rowSteps: 25 }, 3),
    );

    const types = Object.fromEntries([...families].map(([name, f]) => [name, f.type]));
    expect(types).toEqual({
      lens_backend_requests_accepted_total: "counter",
      lens_backend_requests_total: "counter",
      lens_backend_requests_by_language_total: "counter",
      lens_backend_tokens_generated_total: "counter",
      lens_backend_time_to_first_token_seconds: "histogram",
      lens_backend_request_duration_seconds: "histogram",
      lens_backend_batch_size: "gauge",
      lens_backend_batch_size_mean: "gauge",
      lens_backend_queue_depth: "gauge",
      lens_backend_deltas_loaded: "gauge",
    });
    for (const [name, f] of families) {
      expect(f.help, name).toBeTruthy();
      // A counter's samples end in _total and never go below 0.
      if (f.type === "counter")
        for (const s of f.samples) expect(s.name.endsWith("_total") && s.value >= 0, s.name).toBe(true);
    }

    // Outcomes: each request once. Accepted ones end in stop | length | error | cancelled; refused ones
    // are rejected_overloaded and never accepted. Summing every outcome counts every request once.
    const accepted = total(families, "lens_backend_requests_accepted_total");
    const rejected = total(families, "lens_backend_requests_total", { outcome: "rejected_overloaded" });
    const outcomes = total(families, "lens_backend_requests_total");
    expect(accepted).toBe(6);
    expect(rejected).toBe(2);
    expect(outcomes - rejected).toBe(accepted);
    expect(outcomes).toBe(8);
    expect(total(families, "lens_backend_requests_by_language_total")).toBe(accepted);
    expect(total(families, "lens_backend_requests_total", { outcome: "cancelled" })).toBe(2);

    const ttft = checkHistogram(families, "lens_backend_time_to_first_token_seconds");
    expect(ttft.count).toBe(ttfts.length);
    expect(ttft.sum).toBeCloseTo(ttfts.reduce((a, b) => a + b, 0) / 1000, 9);
    // Each bucket counts the observations at or under its bound.
    for (const [le, n] of ttft.buckets) expect(n, `le=${le}`).toBe(ttfts.filter((t) => t / 1000 <= le).length);
    const duration = checkHistogram(families, "lens_backend_request_duration_seconds");
    expect(duration.count).toBe(accepted);
    expect(duration.sum).toBeCloseTo(4.38, 9);

    expect(total(families, "lens_backend_tokens_generated_total")).toBe(120);
    expect(total(families, "lens_backend_batch_size")).toBe(2);
    expect(total(families, "lens_backend_batch_size_mean")).toBe(2.5);
    expect(total(families, "lens_backend_queue_depth")).toBe(1);
    expect(total(families, "lens_backend_deltas_loaded")).toBe(3);
  });

  it("keeps counters monotonic across scrapes, whenever they come", async () => {
    const m = new Metrics();
    const read = async (tokens: number) =>
      total(
        parseExposition(await m.render({ running: 0, queued: 0, tokensGenerated: tokens, steps: 0, rowSteps: 0 })),
        "lens_backend_tokens_generated_total",
      );
    expect(await read(10)).toBe(10);
    // The same engine count scraped twice in a row reads the same.
    expect(await read(10)).toBe(10);
    expect(await read(25)).toBe(25);
    const page = await m.render({ running: 0, queued: 0, tokensGenerated: 25, steps: 0, rowSteps: 0 });
    expect(page).not.toContain("tokens_per_second");
  });
});
