import { describe, expect, it } from "vitest";
import type { GenerateFrame, SamplingParams } from "../../src/protocol/backend.js";
import { type LoadedModel, loadModel } from "../../src/gpu-backend/load.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

const loaded = new Map<string, Promise<LoadedModel>>();
function model(dir: string, maxBatch = 8): Promise<LoadedModel> {
  const key = `${dir}:${maxBatch}`;
  if (!loaded.has(key)) loaded.set(key, loadModel(dir, { executionProvider: "cpu", maxBatch, maxQueue: 64 }));
  return loaded.get(key) as Promise<LoadedModel>;
}

interface Result {
  text: string;
  frames: GenerateFrame[];
}

function run(
  m: LoadedModel,
  prompt: string,
  sampling: Partial<SamplingParams> = {},
  signal = new AbortController().signal,
): Promise<Result> {
  return new Promise((resolve) => {
    const frames: GenerateFrame[] = [];
    m.engine.submit({
      promptIds: m.tokenizer.promptIds([{ role: "user", content: prompt }]),
      sampling: { temperature: 0, top_p: 1, stop: [], max_tokens: 24, ...sampling },
      delta: null,
      signal,
      emit(frame) {
        frames.push(frame);
        if (frame.type === "end" || frame.type === "error") {
          resolve({ text: frames.map((f) => (f.type === "text" ? f.text : "")).join(""), frames });
        }
      },
    });
  });
}

const PROMPTS = [
  "What is the capital of France?",
  "Habari za asubuhi? Unaendeleaje leo?",
  "法国的首都是哪里？请简单回答。",
  "Расскажи мне о Москве",
  "hi",
];

describe.each(MODEL_CASES)("engine on $name", ({ dir, skip }) => {
  it.skipIf(skip !== null)("gives each row of a continuous batch the tokens it gets alone", async () => {
    const m = await model(dir);
    const alone: string[] = [];
    for (const p of PROMPTS) alone.push((await run(m, p)).text);
    // All at once: rows of different lengths share decode steps, joining as they are admitted.
    const together = await Promise.all(PROMPTS.map((p) => run(m, p)));
    expect(together.map((r) => r.text)).toEqual(alone);
    expect(m.engine.stats.rowSteps / m.engine.stats.steps).toBeGreaterThan(1);
  });

  it.skipIf(skip !== null)("lets a request that arrives mid-generation join the running batch at once", async () => {
    const m = await model(dir);
    const longAlone = await run(m, "Tell me a long story about the sea.", { max_tokens: 60 });
    const shortAlone = await run(m, "What is two plus two?", { max_tokens: 6 });
    const events: string[] = [];
    let joined: Promise<Result> | undefined;
    const long = new Promise<Result>((resolve) => {
      const frames: GenerateFrame[] = [];
      let texts = 0;
      m.engine.submit({
        promptIds: m.tokenizer.promptIds([{ role: "user", content: "Tell me a long story about the sea." }]),
        sampling: { temperature: 0, top_p: 1, stop: [], max_tokens: 60 },
        delta: null,
        signal: new AbortController().signal,
        emit(frame) {
          frames.push(frame);
          if (frame.type === "text" && ++texts === 5) {
            // The long row is running: a new request arrives now.
            joined = run(m, "What is two plus two?", { max_tokens: 6 }).then((r) => {
              events.push("short ended");
              return r;
            });
          }
          if (frame.type === "end") {
            events.push("long ended");
            resolve({ text: frames.map((f) => (f.type === "text" ? f.text : "")).join(""), frames });
          }
        },
      });
    });
    const [longTogether] = await Promise.all([long]);
    const shortTogether = await joined!;
    expect(longTogether.text).toBe(longAlone.text);
    expect(shortTogether.text).toBe(shortAlone.text);
    // Only meaningful when the long reply really outlasts the short one.
    if (longAlone.frames.length > shortAlone.frames.length + 8) expect(events).toEqual(["short ended", "long ended"]);
  });

  it.skipIf(skip !== null)("ends with finish reason length at max_tokens and counts usage", async () => {
    const m = await model(dir);
    const r = await run(m, "Tell me a long story about the sea.", { max_tokens: 5 });
    const end = r.frames.at(-1);
    expect(end?.type).toBe("end");
    if (end?.type !== "end") return;
    expect(["length", "stop"]).toContain(end.finish_reason);
    expect(end.usage.completion_tokens).toBeLessThanOrEqual(5);
    if (end.finish_reason === "length") expect(end.usage.completion_tokens).toBe(5);
    expect(end.usage.prompt_tokens).toBe(
      m.tokenizer.promptIds([{ role: "user", content: "Tell me a long story about the sea." }]).length,
    );
  });

  it.skipIf(skip !== null)("samples reproducibly with a seed, and differently without one", async () => {
    const m = await model(dir);
    const s = { temperature: 1.5, top_p: 0.95, seed: 42, max_tokens: 16 };
    const a = await run(m, "Write a poem", s);
    const b = await run(m, "Write a poem", s);
    expect(a.text).toBe(b.text);
    const others = await Promise.all([1, 2, 3, 4].map((seed) => run(m, "Write a poem", { ...s, seed })));
    expect(new Set([a.text, ...others.map((o) => o.text)]).size).toBeGreaterThan(1);
  });

  it.skipIf(skip !== null)("cuts at a stop sequence and never shows it", async () => {
    const m = await model(dir);
    const free = await run(m, "Say something", { max_tokens: 24 });
    // Pick a stop string from the text the model produces anyway, so the stop is certain to occur.
    const chars = [...free.text];
    if (chars.length < 4) return;
    const stop = chars.slice(2, 4).join("");
    const cut = await run(m, "Say something", { max_tokens: 24, stop: [stop] });
    expect(cut.text).toBe(free.text.slice(0, free.text.indexOf(stop)));
    const end = cut.frames.at(-1);
    expect(end?.type === "end" && end.finish_reason).toBe("stop");
  });

  it.skipIf(skip !== null)("drops a cancelled row at once, and the others go on", async () => {
    const m = await model(dir);
    const abort = new AbortController();
    const long = run(m, "Count to one hundred", { max_tokens: 200 }, abort.signal);
    const other = run(m, "What is two plus two?", { max_tokens: 8 });
    abort.abort();
    const done = await other;
    expect(done.frames.at(-1)?.type).toBe("end");
    // The cancelled job never ends: it simply stops producing frames.
    const raced = await Promise.race([
      long.then(() => "ended"),
      new Promise((r) => setTimeout(() => r("silent"), 300)),
    ]);
    expect(raced).toBe("silent");
    expect(m.engine.stats.running).toBe(0);
  });
});
