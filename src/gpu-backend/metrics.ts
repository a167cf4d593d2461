/** Prometheus metrics of the backend, rendered in the text exposition format. */
import type { EngineStats } from "./generation/engine.js";
import { LANGUAGES } from "../protocol/languages.js";

const KNOWN_LANGUAGES: ReadonlySet<string> = new Set<string>([...LANGUAGES, "und"]);

/**
 * A label value as the exposition format wants it. The language comes from the request (any 2-3
 * characters): unescaped, a quote or newline in it broke every line after it.
 */
function label(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

export class Metrics {
  private accepted_ = 0;
  private rejected_ = 0;
  private readonly outcomes = new Map<string, number>();
  private readonly byLanguage = new Map<string, number>();
  private ttftSum = 0;
  private ttftCount = 0;
  /** (time, tokens generated) samples for a tokens/s rate over the last window. */
  private readonly samples: Array<[number, number]> = [];

  accepted(): void {
    this.accepted_++;
  }

  rejected(): void {
    this.rejected_++;
  }

  finished(outcome: string, language: string, firstTokenMs: number): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
    // Known tags only: any 2-3 characters pass the schema, and each new label is a new time series.
    const tag = KNOWN_LANGUAGES.has(language) ? language : "other";
    this.byLanguage.set(tag, (this.byLanguage.get(tag) ?? 0) + 1);
    if (firstTokenMs > 0) {
      this.ttftSum += firstTokenMs / 1000;
      this.ttftCount++;
    }
  }

  private rate(stats: EngineStats, now: number): number {
    this.samples.push([now, stats.tokensGenerated]);
    while (this.samples.length > 2 && (this.samples[0] as [number, number])[0] < now - 10_000) this.samples.shift();
    const [t0, n0] = this.samples[0] as [number, number];
    return now > t0 ? ((stats.tokensGenerated - n0) * 1000) / (now - t0) : 0;
  }

  render(stats: EngineStats, deltasLoaded = 0, now = Date.now()): string {
    const lines = [
      "# HELP lens_backend_requests_total Generate requests by outcome.",
      "# TYPE lens_backend_requests_total counter",
      `lens_backend_requests_total{outcome="accepted"} ${this.accepted_}`,
      `lens_backend_requests_total{outcome="rejected_overloaded"} ${this.rejected_}`,
      ...[...this.outcomes].map(([k, v]) => `lens_backend_requests_total{outcome="${label(k)}"} ${v}`),
      "# HELP lens_backend_requests_by_language_total Finished requests by language.",
      "# TYPE lens_backend_requests_by_language_total counter",
      ...[...this.byLanguage].map(([k, v]) => `lens_backend_requests_by_language_total{language="${label(k)}"} ${v}`),
      "# HELP lens_backend_tokens_generated_total Tokens generated.",
      "# TYPE lens_backend_tokens_generated_total counter",
      `lens_backend_tokens_generated_total ${stats.tokensGenerated}`,
      "# HELP lens_backend_tokens_per_second Tokens generated per second over the last 10 s.",
      "# TYPE lens_backend_tokens_per_second gauge",
      `lens_backend_tokens_per_second ${this.rate(stats, now).toFixed(2)}`,
      "# HELP lens_backend_batch_size Rows in the running batch.",
      "# TYPE lens_backend_batch_size gauge",
      `lens_backend_batch_size ${stats.running}`,
      "# HELP lens_backend_batch_size_mean Mean rows per decode step since start.",
      "# TYPE lens_backend_batch_size_mean gauge",
      `lens_backend_batch_size_mean ${stats.steps ? (stats.rowSteps / stats.steps).toFixed(3) : 0}`,
      "# HELP lens_backend_queue_depth Requests waiting to join the batch.",
      "# TYPE lens_backend_queue_depth gauge",
      `lens_backend_queue_depth ${stats.queued}`,
      "# HELP lens_backend_deltas_loaded Deltas held in memory.",
      "# TYPE lens_backend_deltas_loaded gauge",
      `lens_backend_deltas_loaded ${deltasLoaded}`,
      "# HELP lens_backend_time_to_first_token_seconds_sum Sum of times to first token.",
      "# TYPE lens_backend_time_to_first_token_seconds_sum counter",
      `lens_backend_time_to_first_token_seconds_sum ${this.ttftSum.toFixed(6)}`,
      `lens_backend_time_to_first_token_seconds_count ${this.ttftCount}`,
    ];
    return lines.join("\n") + "\n";
  }
}
