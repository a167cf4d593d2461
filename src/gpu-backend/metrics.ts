/**
 * Prometheus metrics of the backend (prom-client, one registry per app), rendered in the text
 * exposition format. Each generate request is counted once when the engine accepts it and once when it
 * ends, by outcome, so `sum(requests_total) - requests_total{outcome="rejected_overloaded"}` equals
 * `requests_accepted_total` minus the requests still running. Rates (tokens/s) are left to the
 * scraper: a counter read twice gives them for any window, where a gauge computed here depended on when
 * each scrape came.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { FinishReason } from "../protocol/backend.js";
import { LANGUAGES } from "../protocol/languages.js";
import type { EngineStats } from "./generation/engine.js";

const KNOWN_LANGUAGES: ReadonlySet<string> = new Set<string>([...LANGUAGES, "und"]);

/** How an accepted request ended; a request refused for a full queue is counted as "rejected_overloaded". */
export type Outcome = FinishReason | "error" | "cancelled";
const OUTCOMES: readonly (Outcome | "rejected_overloaded")[] = [
  "stop",
  "length",
  "error",
  "cancelled",
  "rejected_overloaded",
];

/** Seconds; time to first token on a busy CPU backend runs from milliseconds to seconds. */
const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class Metrics {
  private readonly registry = new Registry();
  private readonly accepted_ = new Counter({
    name: "lens_backend_requests_accepted_total",
    help: "Generate requests the engine accepted (each ends once in lens_backend_requests_total).",
    registers: [this.registry],
  });
  private readonly requests = new Counter({
    name: "lens_backend_requests_total",
    help: "Generate requests by how they ended: stop, length, error, cancelled, or rejected_overloaded (never accepted).",
    labelNames: ["outcome"],
    registers: [this.registry],
  });
  private readonly byLanguage = new Counter({
    name: "lens_backend_requests_by_language_total",
    help: "Finished requests by language (known tags, else other).",
    labelNames: ["language"],
    registers: [this.registry],
  });
  private readonly tokens = new Counter({
    name: "lens_backend_tokens_generated_total",
    help: "Tokens generated.",
    registers: [this.registry],
  });
  private readonly ttft = new Histogram({
    name: "lens_backend_time_to_first_token_seconds",
    help: "Time from a request's arrival to its first text, for requests that produced text.",
    buckets: TTFT_BUCKETS,
    registers: [this.registry],
  });
  private readonly duration = new Histogram({
    name: "lens_backend_request_duration_seconds",
    help: "Time from a request's arrival to its end, for accepted requests.",
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  private readonly batchSize = new Gauge({
    name: "lens_backend_batch_size",
    help: "Rows in the running batch.",
    registers: [this.registry],
  });
  private readonly batchSizeMean = new Gauge({
    name: "lens_backend_batch_size_mean",
    help: "Mean rows per decode step since start.",
    registers: [this.registry],
  });
  private readonly queueDepth = new Gauge({
    name: "lens_backend_queue_depth",
    help: "Requests waiting to join the batch.",
    registers: [this.registry],
  });
  private readonly deltasLoaded = new Gauge({
    name: "lens_backend_deltas_loaded",
    help: "Deltas held in memory.",
    registers: [this.registry],
  });
  /** The engine's token count already added to `tokens`. */
  private tokensSeen = 0;

  constructor() {
    // Every outcome from the start, so sums over them do not change shape as outcomes first occur.
    for (const outcome of OUTCOMES) this.requests.inc({ outcome }, 0);
  }

  accepted(): void {
    this.accepted_.inc();
  }

  rejected(): void {
    this.requests.inc({ outcome: "rejected_overloaded" });
  }

  /** `firstTokenMs` 0: the request produced no text (it is left out of the time-to-first-token histogram). */
  finished(outcome: Outcome, language: string, firstTokenMs: number, durationMs?: number): void {
    this.requests.inc({ outcome });
    // Known tags only: any 2-3 characters pass the schema, and each new label is a new time series.
    this.byLanguage.inc({ language: KNOWN_LANGUAGES.has(language) ? language : "other" });
    if (firstTokenMs > 0) this.ttft.observe(firstTokenMs / 1000);
    if (durationMs !== undefined) this.duration.observe(durationMs / 1000);
  }

  async render(stats: EngineStats, deltasLoaded = 0): Promise<string> {
    if (stats.tokensGenerated > this.tokensSeen) {
      this.tokens.inc(stats.tokensGenerated - this.tokensSeen);
      this.tokensSeen = stats.tokensGenerated;
    }
    this.batchSize.set(stats.running);
    this.batchSizeMean.set(stats.steps ? Number((stats.rowSteps / stats.steps).toFixed(3)) : 0);
    this.queueDepth.set(stats.queued);
    this.deltasLoaded.set(deltasLoaded);
    // prom-client separates metric families with blank lines; one sample or comment per line reads simpler.
    return (await this.registry.metrics()).replace(/\n{2,}/g, "\n");
  }
}
