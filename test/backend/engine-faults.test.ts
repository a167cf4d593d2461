/**
 * Fault matrix row 8, engine side (docs/faults.md): a request whose client went away (its signal
 * aborted, as the backend's route does when the response stream is cancelled) stops generating
 * within one decode step and leaves the batch; the other rows go on to their end.
 */
import { describe, expect, it } from "vitest";
import type { GenerateFrame } from "../../src/protocol/backend.js";
import { loadModel } from "../../src/gpu-backend/load.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

const embedded = MODEL_CASES[0]!;

describe.skipIf(embedded.skip !== null)("fault 8: a client that disconnects, in the engine", () => {
  it("stops the row within one step: no token after the cancel, the row leaves the batch, the other row finishes", async () => {
    const m = await loadModel(embedded.dir, { executionProvider: "cpu", maxBatch: 8, maxQueue: 8 });
    const { engine, tokenizer } = m;
    const abort = new AbortController();
    const cancelled: GenerateFrame[] = [];
    let atCancel: { steps: number; tokens: number } | undefined;
    let framesAtCancel = 0;
    const sampling = { temperature: 0, top_p: 1, stop: [] };

    const other = new Promise<GenerateFrame[]>((resolve) => {
      const frames: GenerateFrame[] = [];
      engine.submit({
        promptIds: tokenizer.promptIds([{ role: "user", content: "Count from 1 to 30, one number per line." }]),
        sampling: { ...sampling, max_tokens: 120 },
        delta: null,
        signal: new AbortController().signal,
        emit(frame) {
          frames.push(frame);
          if (frame.type === "end" || frame.type === "error") resolve(frames);
        },
      });
    });
    engine.submit({
      promptIds: tokenizer.promptIds([{ role: "user", content: "Count from 1 to 500, one number per line." }]),
      sampling: { ...sampling, max_tokens: 900 },
      delta: null,
      signal: abort.signal,
      emit(frame) {
        cancelled.push(frame);
        if (frame.type === "text" && cancelled.length === 6 && atCancel === undefined) {
          // The client goes away here, in the middle of a step.
          atCancel = { steps: engine.stats.steps, tokens: engine.stats.tokensGenerated };
          framesAtCancel = cancelled.length;
          abort.abort();
        }
      },
    });

    const done = await other;
    expect(done.at(-1)?.type).toBe("end");
    // Wait until the engine is idle (it stops looping once no row is left).
    for (let i = 0; i < 400 && (engine.stats.running > 0 || engine.stats.queued > 0); i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(atCancel).toBeDefined();
    expect(engine.stats).toMatchObject({ running: 0, queued: 0 });
    // Nothing reached the cancelled request after the cancel: no text, no end frame.
    expect(cancelled).toHaveLength(framesAtCancel);
    // Tokens made after the cancel belong to the other row only, and were one per step at most.
    const otherTokens = done
      .filter((f) => f.type === "end")
      .map((f) => (f.type === "end" ? f.usage.completion_tokens : 0))[0]!;
    const stepsAfter = engine.stats.steps - atCancel!.steps;
    const tokensAfter = engine.stats.tokensGenerated - atCancel!.tokens;
    expect(tokensAfter).toBeLessThanOrEqual(stepsAfter);
    expect(tokensAfter).toBeLessThanOrEqual(otherTokens);
    // And the cancelled row was far from its own end: it was cut off, not finished.
    expect(cancelled.filter((f) => f.type === "end")).toEqual([]);
  });
});
