/**
 * The probe job's work: last-token hidden states of parallel prompts per language, the probe math per
 * layer (../probe/probe.ts), and the probe's tensors and manifest as the job's artifact.
 */
import type { ProbeJobRequest } from "../../../protocol/lens-jobs.js";
import { HiddenStateCollector, type CollectorOptions } from "../hidden-states.js";
import { encodeProbe, probe as runProbe, type LensProbe } from "../probe/probe.js";
import { splitPrompts } from "./prompts.js";
import { ms, type JobContext, type WorkOutput } from "./work.js";

export async function probeWork(ctx: JobContext, r: ProbeJobRequest): Promise<WorkOutput> {
  const { model, signal } = ctx;
  const started = performance.now();
  const prompts: Record<string, readonly string[]> =
    r.prompts === "probe"
      ? splitPrompts("probe", r.languages, r.per_language, ctx.promptsFile)
      : Object.fromEntries(r.languages.map((l) => [l, (r.prompts as Record<string, string[]>)[l]!]));
  const promptOptions = {
    ...(r.max_prompt_tokens !== undefined ? { maxPromptTokens: r.max_prompt_tokens } : {}),
    ...(r.truncation !== undefined ? { truncation: r.truncation } : {}),
    ...(r.system !== undefined ? { system: r.system } : {}),
  };
  const collectorOptions: CollectorOptions = {
    ...promptOptions,
    sessionOptions: ctx.sessionOptions,
    ...(ctx.batchSize !== undefined ? { batchSize: ctx.batchSize } : {}),
  };
  const collector = await HiddenStateCollector.create(
    { info: model.info, tokenizer: model.tokenizer },
    r.layers,
    collectorOptions,
  );
  const sessionMs = performance.now() - started;
  let collectMs = 0;
  ctx.progress({ stage: "collecting", done: 0, total: r.languages.length });
  let p: LensProbe;
  const t0 = performance.now();
  try {
    p = await runProbe(collector, prompts, r.layers, r.central, {
      ...promptOptions,
      fingerprint: model.fingerprint,
      ...(r.rank !== undefined ? { rank: r.rank } : {}),
      signal,
      onProgress: (s) => {
        collectMs = s.collectMs;
        ctx.progress({ stage: "collecting", done: s.done, total: s.total });
      },
    });
  } finally {
    await collector.release();
  }
  const probeMs = performance.now() - t0;
  const w0 = performance.now();
  const { bytes, manifest } = encodeProbe(p);
  const encodeMs = performance.now() - w0;
  return {
    artifact: { kind: "probe", id: p.id, tensors: bytes, manifest },
    result: {
      probe_id: p.id,
      languages: p.languages,
      layers: p.layers.map((l) => l.layer),
      ranks: Object.fromEntries(p.layers.map((l) => [String(l.layer), l.rank])),
      prompts_per_language: p.counts,
      timings_ms: {
        session: ms(sessionMs),
        collect: ms(collectMs),
        math: ms(probeMs - collectMs),
        encode: ms(encodeMs),
      },
    },
  };
}
