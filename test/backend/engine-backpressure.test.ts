/** The engine refuses new work at once when its queue is full, in length or in how long it has waited. */
import { describe, expect, it } from "vitest";
import { QueueFullError } from "../../src/gpu-backend/generation/engine.js";
import { type LoadedModel, loadModel } from "../../src/gpu-backend/load.js";
import type { GenerateFrame } from "../../src/protocol/backend.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

const embedded = MODEL_CASES[0]!;

function job(m: LoadedModel, maxTokens: number, signal: AbortSignal, frames: GenerateFrame[] = []) {
  return {
    promptIds: m.tokenizer.promptIds([{ role: "user" as const, content: "Tell me a long story about the sea." }]),
    sampling: { temperature: 0, top_p: 1, stop: [], max_tokens: maxTokens },
    delta: null,
    signal,
    emit: (f: GenerateFrame) => void frames.push(f),
  };
}

/** Submits at `now`; the refusal, or null when the job was queued. */
function refusalAt(m: LoadedModel, signal: AbortSignal, now: number): QueueFullError | null {
  try {
    m.engine.submit(job(m, 4, signal), now);
    return null;
  } catch (err) {
    if (err instanceof QueueFullError) return err;
    throw err;
  }
}

describe.skipIf(embedded.skip !== null)("engine backpressure", () => {
  it("refuses when the oldest waiting request has waited past the bound, with a retry-after from the excess", async () => {
    const m = await loadModel(embedded.dir, {
      executionProvider: "cpu",
      maxBatch: 1,
      maxQueue: 100,
      maxQueueWaitMs: 2_000,
    });
    const stop = new AbortController();
    const t = performance.now();
    // The first is taken into the batch at once; the second waits from t.
    m.engine.submit(job(m, 200, stop.signal), t);
    expect(refusalAt(m, stop.signal, t)).toBeNull();
    // Within the bound: still accepted, though the queue is not empty.
    expect(refusalAt(m, stop.signal, t + 1_500)).toBeNull();
    expect(refusalAt(m, stop.signal, t + 3_200)?.retryAfterS).toBe(2);
    expect(m.engine.stats.queued).toBe(2);
    stop.abort();
  });

  it("refuses past the length bound with retry-after 1, and never without a bound on the wait", async () => {
    const m = await loadModel(embedded.dir, { executionProvider: "cpu", maxBatch: 1, maxQueue: 2 });
    const stop = new AbortController();
    const t = performance.now();
    m.engine.submit(job(m, 200, stop.signal), t);
    expect(refusalAt(m, stop.signal, t)).toBeNull();
    // No wait bound configured: an hour-old queue still takes work while it has room.
    expect(refusalAt(m, stop.signal, t + 3_600_000)).toBeNull();
    expect(refusalAt(m, stop.signal, t + 3_600_000)?.retryAfterS).toBe(1);
    stop.abort();
  });

  /** Submits a long job and waits until it runs (the loop may still be ending its previous turn). */
  async function occupy(m: LoadedModel, signal: AbortSignal): Promise<void> {
    m.engine.submit(job(m, 400, signal));
    while (m.engine.stats.queued > 0 || m.engine.stats.running === 0) await new Promise((r) => setTimeout(r, 1));
  }

  /** Runs `n` one-token jobs to the end, so that the engine has seen its queue drain. */
  async function drainSome(m: LoadedModel, n: number, signal: AbortSignal): Promise<void> {
    await Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise<void>((resolve) =>
            m.engine.submit({
              ...job(m, 1, signal),
              emit: (f) => (f.type === "end" || f.type === "error") && resolve(),
            }),
          ),
      ),
    );
  }

  it("refuses once the queue ahead would take longer than the bound to drain at its recent rate", async () => {
    const m = await loadModel(embedded.dir, {
      executionProvider: "cpu",
      maxBatch: 1,
      maxQueue: 50_000,
      maxQueueWaitMs: 5_000,
    });
    const stop = new AbortController();
    await drainSome(m, 12, stop.signal);
    await occupy(m, stop.signal);
    // All queued "now": the head has not waited at all, so only the drain estimate can refuse.
    const now = performance.now();
    let accepted = 0;
    let refused: QueueFullError | null = null;
    while (!refused && accepted < 50_000) {
      refused = refusalAt(m, stop.signal, now);
      if (!refused) accepted++;
    }
    expect(refused?.message).toBe("queue wait over its bound");
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(49_000);
    stop.abort();
  });

  it("does not read an idle spell as a slow queue", async () => {
    const m = await loadModel(embedded.dir, {
      executionProvider: "cpu",
      maxBatch: 1,
      maxQueue: 40,
      maxQueueWaitMs: 5_000,
    });
    const stop = new AbortController();
    await drainSome(m, 12, stop.signal);
    await occupy(m, stop.signal);
    // A minute later the drain history is stale: the queue fills to its length bound, no sooner.
    const later = performance.now() + 60_000;
    for (let i = 0; i < 40; i++) expect(refusalAt(m, stop.signal, later), `job ${i}`).toBeNull();
    const refused = refusalAt(m, stop.signal, later);
    expect(refused?.message).toBe("queue full");
    expect(refused?.retryAfterS).toBe(1);
    stop.abort();
  });
});
