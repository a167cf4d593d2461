-- Guardrails an experiment declares, and why and when it stopped.
-- guardrails: JSON array of {metric: error_rate | p95_latency | feedback_rate, margin | margin_ms, ...}.
-- stop_reason: JSON {by: operator | promotion | guardrail, ...}; for a guardrail, which arm and metric and the figures.
-- guardrails_checked_at: when an isolate last evaluated the guardrails (unix seconds), so that
-- isolates take turns instead of all reading the aggregates.
ALTER TABLE experiments ADD COLUMN guardrails TEXT NOT NULL DEFAULT '[]';
ALTER TABLE experiments ADD COLUMN stop_reason TEXT;
ALTER TABLE experiments ADD COLUMN stopped_at INTEGER;
ALTER TABLE experiments ADD COLUMN guardrails_checked_at INTEGER;

-- Experiment results are grouped queries over an experiment's rows: one covering index (only over
-- rows in an experiment) answers the per-arm counts and sums, and walks an arm's latencies in
-- order for its p95 (ORDER BY total_ms LIMIT 1 OFFSET k). It replaces the (experiment_id, arm) index.
DROP INDEX requests_experiment;
CREATE INDEX requests_experiment_metrics
  ON requests (experiment_id, arm, total_ms, language_match, feedback_score, status, finish_reason)
  WHERE experiment_id IS NOT NULL;

-- Traffic per language and hour (base vs edited) for the admin console, p95 included: the rows
-- of one hour, language and kind come out of this index already sorted by latency.
CREATE INDEX requests_hourly
  ON requests (created_at / 3600, language, delta_id IS NOT NULL, total_ms, language_match, status, finish_reason);
