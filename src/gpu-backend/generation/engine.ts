/**
 * Continuous batching. Requests wait in a bounded queue; the loop admits a waiting request by
 * running its prompt alone (prefill) and then joins it to the running batch, so it never waits for
 * the others to finish; each decode step advances every running row by one token. Rows carry
 * their own delta (or none); a batch without any delta runs the unedited session. A cancelled
 * row leaves the batch before the next step.
 */
import type * as ort from "onnxruntime-node";
import type { FinishReason, GenerateFrame, SamplingParams } from "../../protocol/backend.js";
import type { ChatTokenizer } from "../model/chat-tokenizer.js";
import type { ModelInfo } from "../model/model-dir.js";
import { type KvBatch, concatRows, emptyKv, selectRows } from "./kv-batch.js";
import type { ModelRunner } from "./model-runner.js";
import { sampleToken, seededRandom } from "./sampler.js";
import { StopMatcher } from "./stop-matcher.js";
import { Utf8Guard, Utf8State } from "./utf8-guard.js";
import { StreamDecoder } from "./stream-decoder.js";

/** A delta as the engine applies it: per layer A [d x r], B [r x d], b [d], times `scale`. */
export interface RowDelta {
  id: string;
  scale: number;
  layers: ReadonlyMap<number, { A: Float32Array; B: Float32Array; b: Float32Array; rank: number }>;
}

export interface HookedSession {
  runner: ModelRunner;
  /** The hook inputs for a batch whose rows carry these deltas (null: none). */
  feeds(deltas: ReadonlyArray<RowDelta | null>): Record<string, ort.Tensor>;
}

/**
 * Hooked sessions by the set of layers they edit: a batch runs the session whose hooks sit exactly
 * on the layers its deltas use, so unused layers cost nothing.
 */
export interface HookedSessions {
  forLayers(layers: readonly number[]): Promise<HookedSession>;
}

export interface GenerationJob {
  promptIds: number[];
  sampling: SamplingParams;
  delta: RowDelta | null;
  /** Receives text, end and error frames, in order. */
  emit(frame: GenerateFrame): void;
  signal: AbortSignal;
}

export class QueueFullError extends Error {
  constructor(
    message: string,
    /** When to try again: the wait bound's excess rounded up, else 1 s. */
    readonly retryAfterS = 1,
  ) {
    super(message);
  }
}

/** Departures the queue's drain rate is measured over; fewer than DRAIN_MIN give no estimate. */
const DRAIN_WINDOW = 64;
const DRAIN_MIN = 8;
const DRAIN_RECENT_MS = 30_000;

/** Most prompt tokens (rows x longest prompt) prefilled in one pass. */
const PREFILL_TOKEN_BUDGET = 8192;

export interface EngineOptions {
  maxBatch: number;
  maxQueue: number;
  /**
   * Refuse new work while the oldest waiting request has waited longer than this (ms). A count
   * bound alone lets the wait grow with the model's speed (256 waiting requests are seconds on a
   * GPU, a minute on two CPU cores); this bounds the wait itself, so callers hear "overloaded"
   * at once instead of timing out later. Default: no bound.
   */
  maxQueueWaitMs?: number;
  /**
   * Byte-level tokenizers: never emit a byte sequence that cannot be completed to UTF-8 (default
   * on; off only to compare against the raw model).
   */
  validUtf8?: boolean;
}

interface Row {
  job: GenerationJob;
  tokens: number[];
  nextPosition: number;
  produced: number;
  maxTokens: number;
  random: () => number;
  decoder: StreamDecoder;
  stops: StopMatcher;
  pendingToken: number;
  done: boolean;
  /** Where the reply stands in a UTF-8 character (utf8-guard.ts). */
  utf8: number;
}

export interface EngineStats {
  running: number;
  queued: number;
  tokensGenerated: number;
  steps: number;
  /** Sum over steps of the batch size, for the mean batch size. */
  rowSteps: number;
}

export class Engine {
  private readonly queue: GenerationJob[] = [];
  /** When each waiting job was queued (performance.now()), in queue order. */
  private readonly queuedAt: number[] = [];
  /** When the last DRAIN_WINDOW jobs left the queue for the batch: its drain rate. */
  private readonly departures: number[] = [];
  private rows: Row[] = [];
  private kv: KvBatch;
  private looping = false;
  private readonly eos: ReadonlySet<number>;
  /** Keeps byte-level replies valid UTF-8; null for other tokenizers or when turned off. */
  private readonly utf8: Utf8Guard | null;
  readonly stats: EngineStats = { running: 0, queued: 0, tokensGenerated: 0, steps: 0, rowSteps: 0 };

  constructor(
    private readonly info: ModelInfo,
    private readonly tokenizer: ChatTokenizer,
    private readonly base: ModelRunner,
    private readonly hooked: HookedSessions | null,
    private readonly options: EngineOptions,
  ) {
    this.kv = emptyKv(base.shape, 0);
    const eos = new Set(info.eosTokenIds);
    const eosText = tokenizer.eosToken;
    const fromTokenizer = eosText ? tokenizer.tokenId(eosText) : undefined;
    if (fromTokenizer !== undefined) eos.add(fromTokenizer);
    this.eos = eos;
    this.utf8 = options.validUtf8 !== false && tokenizer.tokenBytes ? Utf8Guard.build(tokenizer.tokenBytes, eos) : null;
  }

  /** The unedited model, for callers that compare against it. */
  get baseRunner(): ModelRunner {
    return this.base;
  }

  get supportsDeltas(): boolean {
    return this.hooked !== null;
  }

  /** Queues a job; throws QueueFullError when the queue is at its bound, in length or in wait. */
  submit(job: GenerationJob, now = performance.now()): void {
    if (this.queue.length >= this.options.maxQueue) throw new QueueFullError("queue full");
    const maxWait = this.options.maxQueueWaitMs;
    if (maxWait !== undefined) {
      // The oldest's wait so far, and the wait the newcomer can expect at the queue's drain rate: a
      // queue accepted while its head was young can still take far longer than the bound to drain.
      const oldest = this.queuedAt[0];
      const waited = oldest === undefined ? 0 : now - oldest;
      const expected = this.expectedWaitMs(now);
      const wait = Math.max(waited, expected ?? 0);
      if (wait > maxWait)
        throw new QueueFullError(
          "queue wait over its bound",
          Math.min(30, Math.max(1, Math.ceil((wait - maxWait) / 1000))),
        );
    }
    this.queue.push(job);
    this.queuedAt.push(now);
    this.stats.queued = this.queue.length;
    if (!this.looping) void this.loop();
  }

  /**
   * How long a job queued now can expect to wait: the jobs ahead of it over the queue's recent
   * drain rate (departures within DRAIN_RECENT_MS, so that an idle spell does not read as a slow
   * queue; a stalled queue shows in its head's wait instead). null while there is too little history.
   */
  private expectedWaitMs(now: number): number | null {
    if (this.queue.length === 0) return 0;
    const recent = this.departures.filter((t) => now - t <= DRAIN_RECENT_MS);
    const first = recent[0];
    const last = recent[recent.length - 1];
    if (first === undefined || last === undefined || recent.length < DRAIN_MIN || last <= first) return null;
    return (this.queue.length * (last - first)) / (recent.length - 1);
  }

  private async loop(): Promise<void> {
    this.looping = true;
    try {
      while (this.queue.length > 0 || this.rows.length > 0) {
        this.dropFinished();
        if (this.queue.length > 0 && this.rows.length < this.options.maxBatch) await this.admit(this.takeWaiting());
        this.stats.queued = this.queue.length;
        this.dropFinished();
        if (this.rows.length > 0) await this.decodeStep();
        // Let sockets flush and new requests arrive between steps.
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.looping = false;
      this.stats.running = 0;
    }
  }

  private async runnerFor(
    deltas: ReadonlyArray<RowDelta | null>,
  ): Promise<{ runner: ModelRunner; feeds?: Record<string, ort.Tensor> }> {
    if (!this.hooked || deltas.every((d) => d === null)) return { runner: this.base };
    const layers = new Set<number>();
    for (const d of deltas) if (d) for (const l of d.layers.keys()) layers.add(l);
    const hooked = await this.hooked.forLayers([...layers].sort((a, b) => a - b));
    return { runner: hooked.runner, feeds: hooked.feeds(deltas) };
  }

  /**
   * Waiting jobs to prefill together: as many as the batch has room for, within a token budget so
   * that one long prefill does not stall the running rows for long.
   */
  private takeWaiting(): GenerationJob[] {
    const room = this.options.maxBatch - this.rows.length;
    const taken: GenerationJob[] = [];
    let longest = 0;
    while (this.queue.length > 0 && taken.length < room) {
      const next = this.queue[0] as GenerationJob;
      const len = Math.max(longest, next.promptIds.length);
      if (taken.length > 0 && len * (taken.length + 1) > PREFILL_TOKEN_BUDGET) break;
      longest = len;
      taken.push(this.queue.shift() as GenerationJob);
      this.queuedAt.shift();
      this.departures.push(performance.now());
      if (this.departures.length > DRAIN_WINDOW) this.departures.shift();
    }
    return taken;
  }

  private newRow(job: GenerationJob): Row {
    const s = job.sampling;
    const room = this.info.contextLength - job.promptIds.length;
    return {
      job,
      tokens: [...job.promptIds],
      nextPosition: job.promptIds.length,
      produced: 0,
      maxTokens: Math.min(s.max_tokens ?? room, room),
      random: seededRandom(s.seed ?? Math.floor(Math.random() * 2 ** 32)),
      decoder: new StreamDecoder((ids) => this.tokenizer.decode(ids)),
      stops: new StopMatcher(s.stop),
      pendingToken: -1,
      done: false,
      utf8: Utf8State.Free,
    };
  }

  /** Prefills the jobs' prompts in one pass (left-padded), then joins them to the running batch. */
  private async admit(jobs: GenerationJob[]): Promise<void> {
    const rows = jobs.filter((j) => !j.signal.aborted).map((j) => this.newRow(j));
    if (rows.length === 0) return;
    try {
      const { runner, feeds } = await this.runnerFor(rows.map((r) => r.job.delta));
      const out = await runner.step({
        kv: emptyKv(this.base.shape, rows.length),
        tokens: rows.map((r) => r.job.promptIds),
        positions: rows.map(() => 0),
        ...(feeds ? { extraFeeds: feeds } : {}),
      });
      rows.forEach((row, i) => this.accept(row, out.logits, i, out.vocab));
      const live = rows.map((r, i) => (r.done ? -1 : i)).filter((i) => i >= 0);
      if (live.length === 0) return;
      this.kv = concatRows(this.base.shape, this.kv, selectRows(this.base.shape, out.kv, live));
      for (const i of live) this.rows.push(rows[i] as Row);
      this.stats.running = this.rows.length;
    } catch (err) {
      for (const row of rows) this.fail(row, err);
    }
  }

  private async decodeStep(): Promise<void> {
    const rows = this.rows;
    const deltas = rows.map((r) => r.job.delta);
    try {
      const { runner, feeds } = await this.runnerFor(deltas);
      const out = await runner.step({
        kv: this.kv,
        tokens: rows.map((r) => [r.pendingToken]),
        positions: rows.map((r) => r.nextPosition - 1),
        ...(feeds ? { extraFeeds: feeds } : {}),
      });
      this.kv = out.kv;
      this.stats.steps++;
      this.stats.rowSteps += rows.length;
      rows.forEach((row, i) => this.accept(row, out.logits, i, out.vocab));
    } catch (err) {
      for (const row of rows) this.fail(row, err);
    }
  }

  /** Samples the row's next token from its logits and emits what became final. */
  private accept(row: Row, logits: Float32Array, index: number, vocab: number): void {
    if (row.done) return;
    if (row.job.signal.aborted) {
      row.done = true;
      return;
    }
    if (row.maxTokens <= 0) return this.finish(row, "length");
    const choice = { temperature: row.job.sampling.temperature, topP: row.job.sampling.top_p, random: row.random };
    let token = sampleToken(logits, index * vocab, vocab, choice);
    if (this.utf8 && !this.utf8.allows(row.utf8, token)) {
      // Only when the pick cannot follow: valid replies are untouched, to the token.
      this.utf8.mask(logits, index * vocab, vocab, row.utf8);
      token = sampleToken(logits, index * vocab, vocab, choice);
    }
    if (this.utf8) row.utf8 = this.utf8.after(row.utf8, token);
    if (this.eos.has(token)) return this.finish(row, "stop");
    row.tokens.push(token);
    row.produced++;
    this.stats.tokensGenerated++;
    row.pendingToken = token;
    row.nextPosition++;
    const { release, stopped } = row.stops.push(row.decoder.push(token));
    if (release) row.job.emit({ type: "text", text: release });
    if (stopped) return this.finish(row, "stop", true);
    if (row.produced >= row.maxTokens) return this.finish(row, "length");
  }

  private finish(row: Row, reason: FinishReason, stopped = false): void {
    row.done = true;
    if (!stopped) {
      let held = row.decoder.flush();
      // Cut at max_tokens inside a character: the part that can never be completed is left out.
      if (row.utf8 !== Utf8State.Free) held = held.replace(/\uFFFD+$/u, "");
      const { release, stopped: hit } = row.stops.push(held);
      const rest = hit ? release : release + row.stops.flush();
      if (rest) row.job.emit({ type: "text", text: rest });
      if (hit) reason = "stop";
    }
    row.job.emit({
      type: "end",
      finish_reason: reason,
      usage: { prompt_tokens: row.job.promptIds.length, completion_tokens: row.produced },
    });
  }

  private fail(row: Row, err: unknown): void {
    if (row.done) return;
    row.done = true;
    // The frame reaches clients through the gateway: the details (paths, runtime internals) stay in the log.
    console.error("generation failed", err);
    row.job.emit({ type: "error", error: { code: "internal", message: "generation failed" } });
  }

  private dropFinished(): void {
    const keep: number[] = [];
    this.rows.forEach((r, i) => {
      if (r.job.signal.aborted) r.done = true;
      if (!r.done) keep.push(i);
    });
    if (keep.length === this.rows.length) return;
    this.kv = selectRows(this.base.shape, this.kv, keep);
    this.rows = keep.map((i) => this.rows[i] as Row);
    this.stats.running = this.rows.length;
  }
}
