/**
 * Generation throughput of the backend, in one run: the engine in-process at concurrency 1, 8 and
 * 32, without deltas and with a different delta on every row (each request its own delta id), the
 * same at concurrency 8 through the HTTP API, and @huggingface/transformers' text-generation
 * pipeline on the same model and prompts as a peer.
 *
 *   npm run bench:backend
 *
 * Environment (or flags):
 *   LENS_MODEL_DIR / --model DIR   model directory (default models/lens-tiny-chat)
 *   BENCH_SCALE=n                  scales the request counts (default 1)
 *   BENCH_MAX_TOKENS=n             tokens per request (default 64); greedy, no stop strings
 *   BENCH_REPS=n                   runs of each configuration (default 5)
 *   BENCH_PEER=0                   skips the peer (it is installed on first use, about 475 MB,
 *                                  into .bench-out/peer/, never into package.json)
 *
 * Each configuration runs BENCH_REPS times, the runs of (a) no deltas and (b) deltas interleaved,
 * and the fastest run is reported with the range over all runs: the machine is shared, and a slow
 * run mostly measures what else ran at the time. The delta cost (b)/(a) is the median over the
 * pairs of runs made back to back; a second, finer measure alternates the plain and the hooked
 * session step by step on the same batch, so both see the same load.
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { Agent, request } from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import { cpus } from "node:os";
import { basename, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { serve } from "@hono/node-server";
import { createBackendApp } from "../../src/gpu-backend/app.js";
import { createHookedSession } from "../../src/gpu-backend/deltas/hooked-session.js";
import { toRowDelta } from "../../src/gpu-backend/deltas/row-delta.js";
import type { HookedSession, RowDelta } from "../../src/gpu-backend/generation/engine.js";
import { concatRows, emptyKv } from "../../src/gpu-backend/generation/kv-batch.js";
import { argmax } from "../../src/gpu-backend/generation/sampler.js";
import { type LoadedModel, loadModel, sessionOptions } from "../../src/gpu-backend/load.js";
import {
  GENERATE_PATH,
  type GenerateFrame,
  type GenerateRequestInput,
  type SamplingParams,
} from "../../src/protocol/backend.js";
import { makeDelta } from "../../dev/make-delta.js";
import { percentile } from "../../dev/percentile.js";
import { npmErrorTail } from "../../dev/local-stack.js";

const ROOT = resolve(fileURLToPath(new URL("../../", import.meta.url)));
const OUT = join(ROOT, ".bench-out");
const PEER_DIR = join(OUT, "peer");
const PEER_SPEC = "@huggingface/transformers@4.3";

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const MODEL_DIR = resolve(ROOT, flag("--model") ?? process.env["LENS_MODEL_DIR"] ?? "models/lens-tiny-chat");
const SCALE = Math.max(0.25, Number(process.env["BENCH_SCALE"] ?? 1) || 1);
const MAX_TOKENS = Math.max(1, Math.floor(Number(process.env["BENCH_MAX_TOKENS"] ?? 64) || 64));
const WITH_PEER = process.env["BENCH_PEER"] !== "0";
const REPS = Math.max(1, Math.floor(Number(process.env["BENCH_REPS"] ?? 5) || 5));
const DELTA_RANK = 8;

/** Requests per client stream at each concurrency (closed loop: a stream sends its next request when one ends). */
const ROUNDS: Record<number, number> = {
  1: Math.max(1, Math.round(4 * SCALE)),
  8: Math.max(1, Math.round(2 * SCALE)),
  32: Math.max(1, Math.round(1 * SCALE)),
};
const CONCURRENCY = [1, 8, 32];

const PROMPTS = [
  "What is the capital of France?",
  "Habari za asubuhi? Unaendeleaje leo?",
  "法国的首都是哪里？",
  "¿Cuál es la mejor manera de aprender a cocinar?",
  "Quel temps fait-il aujourd'hui à Paris ?",
  "Wie funktioniert ein Regenbogen nach dem Regen?",
  "Расскажи мне короткую историю о коте.",
  "ما هي عاصمة مصر؟",
  "भारत की राजधानी क्या है?",
  "日本で一番高い山は何ですか？",
];

const SAMPLING: SamplingParams = { temperature: 0, top_p: 1, stop: [], max_tokens: MAX_TOKENS };

interface Sample {
  tokens: number;
  /** ms from submit to the first text, and to the end. */
  ttft: number;
  total: number;
}

interface Result {
  engine: string;
  concurrency: number;
  deltas: boolean;
  requests: number;
  tokens: number;
  wallMs: number;
  ttftP50: number;
  perStream: number;
  /** Mean rows per decode step (engine runs only). */
  meanBatch?: number;
  note?: string;
  /** tok/s of every run of this configuration (the row shows the fastest). */
  runs?: number[];
}

/** The fastest of several runs of one configuration, carrying all their tok/s. */
function fastest(results: Result[]): Result {
  const rate = (r: Result) => r.tokens / r.wallMs;
  const best = results.reduce((a, b) => (rate(b) > rate(a) ? b : a));
  return { ...best, runs: results.map((r) => rate(r) * 1000) };
}

const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

function summarize(engine: string, concurrency: number, deltas: boolean, samples: Sample[], wallMs: number): Result {
  const tokens = samples.reduce((a, s) => a + s.tokens, 0);
  const perStream = samples.reduce((a, s) => a + s.tokens / (s.total / 1000), 0) / samples.length;
  return {
    engine,
    concurrency,
    deltas,
    requests: samples.length,
    tokens,
    wallMs,
    ttftP50: median(samples.map((s) => s.ttft)),
    perStream,
  };
}

/** `streams` client loops, each sending `rounds` requests one after the other. */
async function closedLoop(
  streams: number,
  rounds: number,
  one: (index: number) => Promise<Sample>,
): Promise<{ samples: Sample[]; wallMs: number }> {
  const samples: Sample[] = [];
  const start = performance.now();
  await Promise.all(
    Array.from({ length: streams }, async (_, s) => {
      for (let r = 0; r < rounds; r++) samples.push(await one(s * rounds + r));
    }),
  );
  return { samples, wallMs: performance.now() - start };
}

// ---------------------------------------------------------------- the engine, in-process

function generate(m: LoadedModel, prompt: string, delta: RowDelta | null): Promise<Sample & { text: string }> {
  return new Promise((resolvePromise, reject) => {
    const start = performance.now();
    let ttft = NaN;
    let text = "";
    m.engine.submit({
      promptIds: m.tokenizer.promptIds([{ role: "user", content: prompt }]),
      sampling: SAMPLING,
      delta,
      signal: new AbortController().signal,
      emit(frame: GenerateFrame) {
        if (frame.type === "text") {
          if (Number.isNaN(ttft)) ttft = performance.now() - start;
          text += frame.text;
        } else if (frame.type === "end") {
          const total = performance.now() - start;
          resolvePromise({
            tokens: frame.usage.completion_tokens,
            ttft: Number.isNaN(ttft) ? total : ttft,
            total,
            text,
          });
        } else if (frame.type === "error") reject(new Error(frame.error.message));
      },
    });
  });
}

let deltaSeed = 1000;
/** A fresh delta (its own id) in the store: rank 8 at the last two layers. */
function freshDelta(m: LoadedModel): RowDelta {
  const seed = deltaSeed++;
  const L = m.info.numLayers;
  const layers = L >= 2 ? [L - 2, L - 1] : [L - 1];
  const made = makeDelta({
    hiddenSize: m.info.hiddenSize,
    layers,
    rank: DELTA_RANK,
    fingerprint: m.fingerprint,
    id: `bench-${seed}`,
    seed,
    scale: 0.05,
  });
  const put = m.deltas.put(made.bytes, made.manifest);
  if (!put.ok) throw new Error(`delta store refused the bench delta: ${put.error.message}`);
  const row = toRowDelta(made.manifest.id, 1, m.deltas.get(made.manifest.id)!.layers);
  if (!row) throw new Error("the bench delta came out as a no-op");
  return row;
}

async function engineRun(m: LoadedModel, concurrency: number, withDeltas: boolean): Promise<Result> {
  const rounds = ROUNDS[concurrency] as number;
  const deltas = Array.from({ length: concurrency * rounds }, () => (withDeltas ? freshDelta(m) : null));
  const before = { steps: m.engine.stats.steps, rowSteps: m.engine.stats.rowSteps };
  const { samples, wallMs } = await closedLoop(concurrency, rounds, (i) =>
    generate(m, PROMPTS[i % PROMPTS.length] as string, deltas[i] ?? null),
  );
  const steps = m.engine.stats.steps - before.steps;
  const r = summarize("lens engine, in-process", concurrency, withDeltas, samples, wallMs);
  r.meanBatch = steps > 0 ? (m.engine.stats.rowSteps - before.rowSteps) / steps : NaN;
  return r;
}

/** Our greedy token ids for one prompt, straight from the unedited session (for the peer check). */
async function greedyIds(m: LoadedModel, promptIds: number[], maxTokens: number): Promise<number[]> {
  const runner = m.engine.baseRunner;
  const eos = new Set(m.info.eosTokenIds);
  const eosId = m.tokenizer.eosToken ? m.tokenizer.tokenId(m.tokenizer.eosToken) : undefined;
  if (eosId !== undefined) eos.add(eosId);
  const out: number[] = [];
  let step = await runner.step({ kv: emptyKv(runner.shape, 1), tokens: [promptIds], positions: [0] });
  let position = promptIds.length;
  while (out.length < maxTokens) {
    const token = argmax(step.logits, 0, step.vocab);
    if (eos.has(token)) break;
    out.push(token);
    if (out.length >= maxTokens) break;
    step = await runner.step({ kv: step.kv, tokens: [[token]], positions: [position++] });
  }
  return out;
}

/**
 * A reference without the engine: `rows` prompts prefilled one by one, then decoded in lockstep
 * with greedy argmax for max_tokens (no EOS, no admission, no streaming text): what the session
 * alone gives at this batch size.
 */
async function bareRun(m: LoadedModel, rows: number): Promise<Result> {
  const runner = m.engine.baseRunner;
  const start = performance.now();
  const ttft: number[] = [];
  let kv = emptyKv(runner.shape, 0);
  const pending: number[] = [];
  const positions: number[] = [];
  for (let r = 0; r < rows; r++) {
    const ids = m.tokenizer.promptIds([{ role: "user", content: PROMPTS[r % PROMPTS.length] as string }]);
    const out = await runner.step({ kv: emptyKv(runner.shape, 1), tokens: [ids], positions: [0] });
    pending.push(argmax(out.logits, 0, out.vocab));
    positions.push(ids.length);
    ttft.push(performance.now() - start);
    kv = concatRows(runner.shape, kv, out.kv);
  }
  for (let t = 1; t < MAX_TOKENS; t++) {
    const out = await runner.step({ kv, tokens: pending.map((x) => [x]), positions: positions.map((p) => p + t - 1) });
    kv = out.kv;
    for (let r = 0; r < rows; r++) pending[r] = argmax(out.logits, r * out.vocab, out.vocab);
  }
  const wallMs = performance.now() - start;
  const samples = ttft.map((f) => ({ tokens: MAX_TOKENS, ttft: f, total: wallMs }));
  const r = summarize("bare session loop (reference: no engine)", rows, false, samples, wallMs);
  r.meanBatch = rows;
  r.note = "prefill one by one, then lockstep";
  return r;
}

interface StepPair {
  rows: number;
  /** Median and 10th-percentile step time. */
  baseMs: number;
  hookedMs: number;
  baseMinMs: number;
  hookedMinMs: number;
  /** Building the hook inputs for a new batch composition (the engine does it when rows join or leave). */
  feedsMs: number;
}

/**
 * The delta cost without the engine's scheduling noise: one batch of `rows` prompts, and decode
 * steps on the same cache alternating between the plain session and the hooked one (each row its
 * own delta), so both see the same machine load. The fast steps (10th percentile) show the
 * computation's own cost (on a loaded machine ORT's threads stall often, which the medians include).
 */
async function stepPair(m: LoadedModel, hooked: HookedSession, rows: number, steps: number): Promise<StepPair> {
  const base = m.engine.baseRunner;
  let kv = emptyKv(base.shape, 0);
  const tokens: number[][] = [];
  const positions: number[] = [];
  for (let r = 0; r < rows; r++) {
    const ids = m.tokenizer.promptIds([{ role: "user", content: PROMPTS[r % PROMPTS.length] as string }]);
    const out = await base.step({ kv: emptyKv(base.shape, 1), tokens: [ids], positions: [0] });
    tokens.push([argmax(out.logits, 0, out.vocab)]);
    positions.push(ids.length);
    kv = concatRows(base.shape, kv, out.kv);
  }
  const deltas = Array.from({ length: rows }, () => freshDelta(m));
  const feedTimes: number[] = [];
  const others = Array.from({ length: rows }, () => freshDelta(m));
  for (let i = 0; i < 5; i++) {
    // Alternating two sets, so every call sees a new composition and builds the inputs.
    const t = performance.now();
    hooked.feeds(i % 2 ? others : deltas);
    feedTimes.push(performance.now() - t);
  }
  const feeds = hooked.feeds(deltas);
  const baseTimes: number[] = [];
  const hookedTimes: number[] = [];
  for (let i = 0; i < steps + 2; i++) {
    for (const which of i % 2 ? ["hooked", "base"] : ["base", "hooked"]) {
      const t = performance.now();
      if (which === "base") await base.step({ kv, tokens, positions });
      else await hooked.runner.step({ kv, tokens, positions, extraFeeds: feeds });
      if (i >= 2) (which === "base" ? baseTimes : hookedTimes).push(performance.now() - t);
    }
  }
  return {
    rows,
    baseMs: median(baseTimes),
    hookedMs: median(hookedTimes),
    baseMinMs: percentile(baseTimes, 10) ?? Number.NaN,
    hookedMinMs: percentile(hookedTimes, 10) ?? Number.NaN,
    feedsMs: median(feedTimes),
  };
}

// ---------------------------------------------------------------- the engine, over HTTP

async function httpRun(m: LoadedModel, concurrency: number): Promise<Result> {
  const app = createBackendApp(m);
  const server = await new Promise<ReturnType<typeof serve>>((ok) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => ok(s));
  });
  const port = (server.address() as AddressInfo).port;
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const one = (i: number): Promise<Sample> =>
    new Promise((ok, fail) => {
      const body: GenerateRequestInput = {
        request_id: `bench-${i}`,
        model: m.info.id,
        messages: [{ role: "user", content: PROMPTS[i % PROMPTS.length] as string }],
        sampling: SAMPLING,
        language: "und",
        delta: null,
      };
      const json = JSON.stringify(body);
      const start = performance.now();
      let ttft = NaN;
      let tokens = -1;
      let buffer = "";
      const req = request(
        {
          host: "127.0.0.1",
          port,
          path: GENERATE_PATH,
          method: "POST",
          agent,
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(json) },
        },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            fail(new Error(`status ${res.statusCode}`));
            return;
          }
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            buffer += chunk;
            for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
              const frame = JSON.parse(buffer.slice(0, nl)) as GenerateFrame;
              buffer = buffer.slice(nl + 1);
              if (frame.type === "text" && Number.isNaN(ttft)) ttft = performance.now() - start;
              if (frame.type === "end") tokens = frame.usage.completion_tokens;
              if (frame.type === "error") fail(new Error(frame.error.message));
            }
          });
          res.on("end", () => {
            const total = performance.now() - start;
            if (tokens < 0) fail(new Error("the stream ended without an end frame"));
            else ok({ tokens, ttft: Number.isNaN(ttft) ? total : ttft, total });
          });
        },
      );
      req.on("error", fail);
      req.end(json);
    });
  try {
    await one(0); // a warm connection, and the route's first call
    const rounds = ROUNDS[concurrency] as number;
    const { samples, wallMs } = await closedLoop(concurrency, rounds, one);
    return summarize("lens backend, HTTP (NDJSON, loopback)", concurrency, false, samples, wallMs);
  } finally {
    agent.destroy();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
}

// ---------------------------------------------------------------- the peer

/** The part of @huggingface/transformers this bench uses. */
interface PeerModule {
  pipeline(task: string, model: string, options: Record<string, unknown>): Promise<PeerPipeline>;
  env: { allowRemoteModels: boolean; allowLocalModels: boolean; localModelPath: string };
  BaseStreamer: new () => { put(value: unknown): void; end(): void };
}
interface PeerPipeline {
  (messages: unknown, options: Record<string, unknown>): Promise<unknown>;
  tokenizer: { apply_chat_template(messages: unknown, options: Record<string, unknown>): unknown };
  dispose?: () => Promise<void>;
}

function loadPeerModule(): { peer: PeerModule; version: string } | { why: string } {
  const pkg = join(PEER_DIR, "node_modules", "@huggingface", "transformers", "package.json");
  if (!existsSync(pkg)) {
    console.error(`[peer] installing ${PEER_SPEC} into .bench-out/peer/ (first use, about 475 MB) ...`);
    mkdirSync(PEER_DIR, { recursive: true });
    // The CPU binaries of onnxruntime-node are in the package; its install script only fetches the
    // CUDA ones (from NuGet), which this bench does not need.
    const r = spawnSync("npm", ["install", "--prefix", PEER_DIR, "--no-save", "--no-audit", "--no-fund", PEER_SPEC], {
      cwd: ROOT,
      env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip" },
      encoding: "utf8",
      timeout: 10 * 60_000,
    });
    if (r.status !== 0 || !existsSync(pkg)) return { why: `npm install ${PEER_SPEC} failed (${npmErrorTail(r)}` };
  }
  try {
    const version = (JSON.parse(readFileSync(pkg, "utf8")) as { version: string }).version;
    const require = createRequire(pkg);
    return { peer: require("@huggingface/transformers") as PeerModule, version };
  } catch (err) {
    return { why: `cannot load the installed ${PEER_SPEC}: ${(err as Error).message}` };
  }
}

/**
 * The peer reads Hugging Face's `config.json`. A model in onnxruntime-genai layout only (no
 * config.json) gets one written from genai_config.json into the bench's copy of the directory.
 */
function peerModelDir(m: LoadedModel): string {
  if (existsSync(join(m.info.dir, "config.json"))) return m.info.dir;
  const eos = [
    ...new Set([...m.info.eosTokenIds, ...(m.tokenizer.eosToken ? [m.tokenizer.tokenId(m.tokenizer.eosToken)] : [])]),
  ].filter((x) => x !== undefined);
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: m.info.numHeads * m.info.headSize,
    num_hidden_layers: m.info.numLayers,
    num_attention_heads: m.info.numHeads,
    num_key_value_heads: m.info.numKvHeads,
    head_dim: m.info.headSize,
    vocab_size: m.info.vocabSize,
    max_position_embeddings: m.info.contextLength,
    bos_token_id: m.info.bosTokenId,
    eos_token_id: eos,
    pad_token_id: m.info.padTokenId,
    use_cache: true,
  };
  writeFileSync(join(m.info.dir, "config.json"), JSON.stringify(config, null, 2));
  return m.info.dir;
}

interface PeerRun {
  results: Result[];
  check: string;
}

async function peerRuns(
  m: LoadedModel,
  checkIds: number[],
  checkPromptIds: number[],
): Promise<PeerRun | { why: string }> {
  const loaded = loadPeerModule();
  if ("why" in loaded) return loaded;
  const { peer, version } = loaded;
  const name = `transformers.js ${version} pipeline`;
  let pipe: PeerPipeline;
  try {
    peer.env.allowRemoteModels = false;
    peer.env.allowLocalModels = true;
    peer.env.localModelPath = "";
    pipe = await peer.pipeline("text-generation", peerModelDir(m), {
      local_files_only: true,
      subfolder: "",
      model_file_name: "model",
      dtype: "fp32",
      device: "cpu",
    });
  } catch (err) {
    return { why: `${name} cannot load ${m.info.id}: ${(err as Error).message.split("\n")[0]}` };
  }
  const eos = new Set(m.info.eosTokenIds);
  const eosId = m.tokenizer.eosToken ? m.tokenizer.tokenId(m.tokenizer.eosToken) : undefined;
  if (eosId !== undefined) eos.add(eosId);

  // One request; the streamer sees the prompt first, then each new token.
  const one = async (prompt: string, queuedAt = performance.now()): Promise<Sample & { ids: number[] }> => {
    const ids: number[] = [];
    let puts = 0;
    let ttft = NaN;
    const streamer = new (class extends peer.BaseStreamer {
      override put(value: unknown): void {
        if (puts++ === 0) return;
        if (Number.isNaN(ttft)) ttft = performance.now() - queuedAt;
        const v = (value as ArrayLike<ArrayLike<bigint | number>>)[0];
        if (v) for (let i = 0; i < v.length; i++) ids.push(Number(v[i]));
      }
      override end(): void {}
    })();
    await pipe([{ role: "user", content: prompt }], { max_new_tokens: MAX_TOKENS, do_sample: false, streamer });
    const total = performance.now() - queuedAt;
    while (ids.length && eos.has(ids[ids.length - 1] as number)) ids.pop();
    return { tokens: ids.length, ttft: Number.isNaN(ttft) ? total : ttft, total, ids };
  };

  try {
    await one(PROMPTS[1] as string); // warm-up
    // Same prompt, same greedy decoding: do the tokens match ours?
    const rendered = pipe.tokenizer.apply_chat_template([{ role: "user", content: PROMPTS[0] }], {
      add_generation_prompt: true,
      tokenize: true,
      return_tensor: false,
    });
    const peerPrompt = (Array.isArray(rendered) ? rendered : (rendered as { input_ids?: unknown }).input_ids) as
      | ArrayLike<number | bigint>
      | undefined;
    const samePrompt =
      peerPrompt !== undefined &&
      peerPrompt.length === checkPromptIds.length &&
      checkPromptIds.every((x, i) => Number(peerPrompt[i]) === x);
    const got = (await one(PROMPTS[0] as string)).ids;
    let firstDiff = -1;
    for (let i = 0; i < Math.max(got.length, checkIds.length); i++)
      if (got[i] !== checkIds[i]) {
        firstDiff = i;
        break;
      }
    const check =
      firstDiff < 0
        ? `peer greedy tokens EQUAL ours on "${PROMPTS[0]}": ${got.length}/${checkIds.length} tokens identical (prompt ids ${samePrompt ? "identical" : "DIFFER"})`
        : `peer greedy tokens DIFFER from ours on "${PROMPTS[0]}": first difference at token ${firstDiff} (peer ${got[firstDiff]}, ours ${checkIds[firstDiff]}; ${got.length} vs ${checkIds.length} tokens; prompt ids ${samePrompt ? "identical" : "DIFFER"})`;

    const results: Result[] = [];
    for (const concurrency of [1, 8]) {
      // The pipeline runs one request at a time: at 8, all 8 arrive together and are served in turn.
      const requests = concurrency === 1 ? (ROUNDS[1] as number) : 8 * Math.max(1, Math.round(SCALE));
      const runs: Result[] = [];
      for (let rep = 0; rep < REPS; rep++) {
        const samples: Sample[] = [];
        const start = performance.now();
        for (let i = 0; i < requests; i++)
          samples.push(await one(PROMPTS[i % PROMPTS.length] as string, concurrency === 1 ? performance.now() : start));
        const r = summarize(name, concurrency, false, samples, performance.now() - start);
        if (concurrency > 1) r.note = "served one at a time";
        runs.push(r);
      }
      results.push(fastest(runs));
    }
    await pipe.dispose?.();
    return { results, check };
  } catch (err) {
    return { why: `${name} failed while generating: ${(err as Error).message.split("\n")[0]}` };
  }
}

// ---------------------------------------------------------------- the table

const tps = (r: Result) => r.tokens / (r.wallMs / 1000);
const fmt = (x: number, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : "-");

function table(rows: Array<Result & { ratio?: number }>): string {
  const head = [
    "engine",
    "conc.",
    "deltas",
    "requests",
    "tokens generated",
    "tok/s total",
    "tok/s per stream",
    "TTFT p50 ms",
    "mean batch",
    "(b)/(a) tok/s, median of pairs",
    "tok/s of all runs (min-max)",
  ];
  const body = rows.map((r) => [
    r.engine + (r.note ? ` (${r.note})` : ""),
    String(r.concurrency),
    r.deltas ? "(b) own delta per row" : "(a) none",
    String(r.requests),
    String(r.tokens),
    fmt(tps(r)),
    fmt(r.perStream),
    fmt(r.ttftP50, 1),
    r.meanBatch === undefined ? "" : fmt(r.meanBatch, 1),
    r.ratio === undefined ? "" : fmt(r.ratio, 3),
    r.runs && r.runs.length > 1 ? `${fmt(Math.min(...r.runs))}-${fmt(Math.max(...r.runs))}` : "",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] as string).length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 || i === 2 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join(" | ")} |`;
  return [
    line(head),
    `|${widths.map((w, i) => (i === 0 || i === 2 ? `:${"-".repeat(w + 1)}` : `${"-".repeat(w + 1)}:`)).join("|")}|`,
    ...body.map(line),
  ].join("\n");
}

/**
 * A private copy of the model directory, which both the engine and the peer load: the embedded
 * model may be rebuilt while the bench runs, and both sides must see the same files.
 */
function snapshot(dir: string): string {
  const to = join(OUT, "model-snapshot", basename(dir));
  for (let attempt = 0; ; attempt++) {
    const stamp = () =>
      readdirSync(dir)
        .map((f) => `${f}:${statSync(join(dir, f)).mtimeMs}`)
        .join("|");
    const before = stamp();
    rmSync(to, { recursive: true, force: true });
    cpSync(dir, to, { recursive: true, dereference: true });
    chmodSync(to, 0o755);
    if (stamp() === before || attempt >= 2) return to;
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const m = await loadModel(snapshot(MODEL_DIR), { executionProvider: "cpu", maxBatch: 32, maxQueue: 256 });
  if (!m.engine.supportsDeltas) throw new Error("the engine came up without delta hooks");
  console.error(
    `[bench] ${m.info.id}: ${m.info.numLayers} layers, hidden ${m.info.hiddenSize}, vocab ${m.info.vocabSize}; ${MAX_TOKENS} tokens per request, scale ${SCALE}`,
  );

  // Warm both sessions (plain and hooked) and the batching paths.
  await Promise.all([generate(m, PROMPTS[0] as string, null), generate(m, PROMPTS[1] as string, freshDelta(m))]);
  await Promise.all(PROMPTS.map((p, i) => generate(m, p, i % 2 ? freshDelta(m) : null)));

  const rows: Array<Result & { ratio?: number }> = [];
  const bare: Result[] = [];
  for (const c of CONCURRENCY) {
    const runsA: Result[] = [];
    const runsB: Result[] = [];
    const runsBare: Result[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      for (const withDeltas of rep % 2 ? [true, false] : [false, true]) {
        const r = await engineRun(m, c, withDeltas);
        console.error(`[bench] engine c=${c} ${withDeltas ? "deltas" : "plain "} run ${rep + 1}: ${fmt(tps(r))} tok/s`);
        (withDeltas ? runsB : runsA).push(r);
      }
      runsBare.push(await bareRun(m, c));
    }
    const a = fastest(runsA);
    const b = fastest(runsB);
    rows.push(a, { ...b, ratio: median(runsB.map((rb, i) => tps(rb) / tps(runsA[i] as Result))) });
    bare.push(fastest(runsBare));
  }

  const hooked = await createHookedSession(m.info, sessionOptions("cpu"));
  const pairs: StepPair[] = [];
  for (const c of CONCURRENCY)
    pairs.push(await stepPair(m, hooked, c, Math.max(10, Math.round((c === 1 ? 300 : c === 8 ? 150 : 80) * SCALE))));

  // Sanity: did the deltas change anything? (A bench of a no-op would be meaningless.)
  const plainText = (await generate(m, PROMPTS[0] as string, null)).text;
  const editedText = (await generate(m, PROMPTS[0] as string, freshDelta(m))).text;

  const httpRuns: Result[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    const r = await httpRun(m, 8);
    console.error(`[bench] http c=8 run ${rep + 1}: ${fmt(tps(r))} tok/s`);
    httpRuns.push(r);
  }
  const http = fastest(httpRuns);
  rows.push(http);

  const checkPrompt = m.tokenizer.promptIds([{ role: "user", content: PROMPTS[0] as string }]);
  const ours = await greedyIds(m, checkPrompt, MAX_TOKENS);
  const engineAgrees = m.tokenizer.decode(ours) === plainText;
  const notes: string[] = [];
  let peerC8: Result | undefined;
  if (WITH_PEER) {
    const peer = await peerRuns(m, ours, checkPrompt);
    if ("why" in peer) notes.push(`peer row left out: ${peer.why}`);
    else {
      rows.push(...peer.results);
      peerC8 = peer.results.find((r) => r.concurrency === 8);
      notes.push(peer.check);
    }
  } else notes.push("peer row left out: BENCH_PEER=0");
  rows.push(...bare);

  const a = (c: number) =>
    rows.find((r) => r.engine.startsWith("lens engine") && r.concurrency === c && !r.deltas) as Result;
  console.log(
    `\n## Backend generation throughput: ${m.info.id} (${m.info.numLayers} layers, hidden ${m.info.hiddenSize}, vocab ${m.info.vocabSize}, ${m.info.layout} layout; ${m.fingerprint.slice(0, 23)}...)`,
  );
  console.log(
    `greedy (temperature 0), max_tokens ${MAX_TOKENS}, ${PROMPTS.length} prompts in 10 languages; deltas: rank ${DELTA_RANK} at layers ${m.info.numLayers >= 2 ? `${m.info.numLayers - 2},${m.info.numLayers - 1}` : m.info.numLayers - 1}, a different delta id on every request\n`,
  );
  console.log(table(rows));
  console.log("");
  console.log(
    "Delta cost per decode step: same batch and cache, the plain and the hooked session (each row its own delta) alternating step by step:\n",
  );
  console.log(
    "| rows | plain ms/step, p10 / median | hooked ms/step, p10 / median | hooked/plain, p10 | hooked/plain, median | hook inputs for a new batch composition, ms |",
  );
  console.log(
    "|-----:|----------------------------:|-----------------------------:|------------------:|---------------------:|--------------------------------------------:|",
  );
  for (const p of pairs) {
    console.log(
      `| ${p.rows} | ${fmt(p.baseMinMs, 2)} / ${fmt(p.baseMs, 2)} | ${fmt(p.hookedMinMs, 2)} / ${fmt(p.hookedMs, 2)} | ${fmt(p.hookedMinMs / p.baseMinMs, 3)} | ${fmt(p.hookedMs / p.baseMs, 3)} | ${fmt(p.feedsMs, 2)} |`,
    );
  }
  console.log("");
  console.log(
    `- tok/s total: tokens generated by all streams / wall time; per stream: mean over requests of tokens / (submit -> end); TTFT: submit -> first text.`,
  );
  console.log(
    `- each configuration ran ${REPS} time${REPS === 1 ? "" : "s"} ((a) and (b) interleaved); the row is the fastest run, the last column the range over all runs; (b)/(a) is the median of the ratios of runs made back to back.`,
  );
  const bareAt = (c: number) => bare.find((r) => r.concurrency === c) as Result;
  console.log(
    `- batching: 8 streams give ${fmt(tps(a(8)) / tps(a(1)), 2)}x and 32 streams ${fmt(tps(a(32)) / tps(a(1)), 2)}x the tok/s of one stream (bare session loop: ${fmt(tps(bareAt(8)) / tps(bareAt(1)), 2)}x, ${fmt(tps(bareAt(32)) / tps(bareAt(1)), 2)}x); the engine reaches ${CONCURRENCY.map((c) => `${fmt((100 * tps(a(c))) / tps(bareAt(c)))}%`).join(" / ")} of the bare loop at ${CONCURRENCY.join(" / ")} streams.`,
  );
  if (peerC8)
    console.log(
      `- 8 concurrent requests: lens engine ${fmt(tps(a(8)))} tok/s vs peer ${fmt(tps(peerC8))} tok/s = ${fmt(tps(a(8)) / tps(peerC8), 2)}x (target >= 2x)`,
    );
  console.log(
    `- HTTP vs in-process at 8 streams (no deltas): ${fmt(tps(http) / tps(a(8)), 3)}x tok/s, TTFT p50 ${fmt(http.ttftP50, 1)} vs ${fmt(a(8).ttftP50, 1)} ms`,
  );
  console.log(
    `- the deltas ${plainText !== editedText ? "do change" : "did NOT change"} the greedy text of "${PROMPTS[0]}" (so (b) is not a no-op); the engine's greedy text ${engineAgrees ? "equals" : "DIFFERS from"} a plain greedy loop over the same session.`,
  );
  for (const n of notes) console.log(`- ${n}`);
  console.log(
    `- machine: ${cpus().length} cores (${cpus()[0]?.model.trim() ?? "unknown CPU"}), node ${process.version}, onnxruntime-node CPU; the machine is SHARED (other work, e.g. model training, runs beside this bench): figures are noisy, compare ratios within one run.`,
  );
  console.log(`- whole run: ${fmt((performance.now() - t0) / 1000, 1)} s`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
