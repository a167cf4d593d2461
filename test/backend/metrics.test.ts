import { describe, expect, it } from "vitest";
import { Metrics } from "../../src/gpu-backend/metrics.js";
import type { EngineStats } from "../../src/gpu-backend/generation/engine.js";

const stats: EngineStats = { running: 0, queued: 0, tokensGenerated: 10, steps: 4, rowSteps: 6 };

describe("backend metrics", () => {
  it("labels known languages by tag and folds anything else into 'other', escaping nothing unsafe into the output", () => {
    const m = new Metrics();
    m.finished("stop", "sw", 5);
    m.finished("stop", "sw", 5);
    m.finished("stop", 'x"\n', 5);
    m.finished("stop", "qq", 5);
    const text = m.render(stats, 0);
    expect(text).toContain('lens_backend_requests_by_language_total{language="sw"} 2');
    expect(text).toContain('lens_backend_requests_by_language_total{language="other"} 2');
    expect(text).not.toContain("qq");
    // Every sample line is name{labels} value or name value.
    for (const line of text.trim().split("\n")) {
      if (!line.startsWith("#")) expect(line).toMatch(/^[a-z_]+(\{[^\n]*\})? -?[0-9.e+-]+$/);
    }
  });
});
