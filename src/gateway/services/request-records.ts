/**
 * Per-request records: one `requests` row per chat request, written once its answer is finished
 * (ended, failed, or the client went away), off the response path through `waitUntil`.
 */
import { storageTimeout, within } from "../deadline.js";
import { detectLanguage } from "../../language/detect.js";
import type { AnswerSummary, RecordFinish } from "../answer.js";

export interface RequestRecordRow {
  id: string;
  key_id: string;
  language: string;
  experiment_id: string | null;
  arm: string | null;
  delta_id: string | null;
  model: string;
  status: number;
  ttft_ms: number | null;
  total_ms: number;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  finish_reason: RecordFinish;
  reply_language: string | null;
  language_match: number | null;
  stream: number;
  created_at: number;
  feedback_score: number | null;
  feedback_at: number | null;
}

/** Collects what a chat request learns along the way and writes its row exactly once. */
export class RequestRecorder {
  language = "und";
  experimentId: string | null = null;
  arm: string | null = null;
  deltaId: string | null = null;
  model = "";
  promptTokens: number | null = null;
  stream = false;
  /** Told the request's tokens (prompt + completion) once it is finished: the key's rate limit spends them. */
  onTokens: ((tokens: number) => Promise<void>) | null = null;
  /** Runs once the row is written, under the same waitUntil (an experiment's guardrail check); must not throw. */
  afterWrite: (() => Promise<void>) | null = null;
  private done = false;

  constructor(
    /** The real binding: the row is written after the request's deadline too, within `writeWithinMs`. */
    private readonly db: D1Database,
    private readonly waitUntil: (p: Promise<unknown>) => void,
    readonly id: string,
    readonly keyId: string,
    private readonly writeWithinMs: number,
    readonly startedAt = Date.now(),
  ) {}

  get finished(): boolean {
    return this.done;
  }

  /** Records a finished answer; later calls are ignored. */
  finish(summary: AnswerSummary, status = 200): void {
    if (this.done) return;
    this.done = true;
    const now = Date.now();
    const replyLanguage = summary.text.trim() === "" ? null : detectLanguage(summary.text);
    const row: Omit<RequestRecordRow, "feedback_score" | "feedback_at"> = {
      id: this.id,
      key_id: this.keyId,
      language: this.language,
      experiment_id: this.experimentId,
      arm: this.arm,
      delta_id: this.deltaId,
      model: this.model,
      status: summary.status ?? status,
      ttft_ms: summary.firstContentAt === null ? null : summary.firstContentAt - this.startedAt,
      total_ms: now - this.startedAt,
      prompt_tokens: this.promptTokens,
      completion_tokens: summary.completionTokens,
      finish_reason: summary.finishReason,
      reply_language: replyLanguage,
      language_match:
        replyLanguage === null || replyLanguage === "und" || this.language === "und"
          ? null
          : replyLanguage === this.language
            ? 1
            : 0,
      stream: this.stream ? 1 : 0,
      created_at: Math.floor(this.startedAt / 1000),
    };
    const written = writeRequestRecord(this.db, row, this.writeWithinMs);
    const after = this.afterWrite;
    this.waitUntil(after ? written.then(after) : written);
    const tokens = (this.promptTokens ?? 0) + (summary.completionTokens ?? 0);
    if (this.onTokens && tokens > 0) this.waitUntil(this.onTokens(tokens));
  }

  /** Records a request that failed before any answer body (status from the error). */
  fail(status: number): void {
    this.finish({ finishReason: "error", text: "", completionTokens: null, firstContentAt: null, status });
  }
}

/** Writes one row within `withinMs`; a record must never fail a request, so errors are logged only. */
async function writeRequestRecord(
  db: D1Database,
  r: Omit<RequestRecordRow, "feedback_score" | "feedback_at">,
  withinMs: number,
): Promise<void> {
  try {
    // A caller may reuse its x-request-id: the first answer keeps the row.
    const write = db
      .prepare(
        `INSERT INTO requests (id, key_id, language, experiment_id, arm, delta_id, model, status, ttft_ms, total_ms,
           prompt_tokens, completion_tokens, finish_reason, reply_language, language_match, stream, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT(id) DO NOTHING`,
      )
      .bind(
        r.id,
        r.key_id,
        r.language,
        r.experiment_id,
        r.arm,
        r.delta_id,
        r.model,
        r.status,
        r.ttft_ms,
        r.total_ms,
        r.prompt_tokens,
        r.completion_tokens,
        r.finish_reason,
        r.reply_language,
        r.language_match,
        r.stream,
        r.created_at,
      )
      .run();
    await within(write, withinMs, () => storageTimeout("database (D1)"));
  } catch (err) {
    console.error("writing the request record failed", err);
  }
}

/** Sets (or replaces) the feedback on a request made with `keyId`; false when there is none. */
export async function attachFeedback(
  db: D1Database,
  keyId: string,
  requestId: string,
  score: number,
  now = Date.now(),
): Promise<boolean> {
  const res = await db
    .prepare("UPDATE requests SET feedback_score = ?3, feedback_at = ?4 WHERE id = ?1 AND key_id = ?2")
    .bind(requestId, keyId, score, Math.floor(now / 1000))
    .run();
  return res.meta.changes === 1;
}
