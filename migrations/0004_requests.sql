-- One row per chat request the gateway answered after authentication (successes, errors and
-- client disconnects alike), written once when the answer is finished; feedback attaches later.
CREATE TABLE requests (
  id                TEXT PRIMARY KEY,          -- the request id (x-request-id)
  key_id            TEXT NOT NULL,
  language          TEXT NOT NULL,             -- the request's language (or und)
  experiment_id     TEXT,
  arm               TEXT,
  delta_id          TEXT,                      -- the delta really applied; null: base model
  model             TEXT NOT NULL,
  status            INTEGER NOT NULL,          -- the HTTP status sent
  ttft_ms           INTEGER,                   -- time to the first content; null when none came
  total_ms          INTEGER NOT NULL,
  prompt_tokens     INTEGER,
  completion_tokens INTEGER,
  finish_reason     TEXT NOT NULL,             -- stop | length | error | disconnected
  reply_language    TEXT,                      -- detected on the reply text
  language_match    INTEGER,                   -- 1/0; null when either side is und
  stream            INTEGER NOT NULL,
  created_at        INTEGER NOT NULL,          -- unix seconds
  feedback_score    REAL,
  feedback_at       INTEGER
);
CREATE INDEX requests_key ON requests (key_id, created_at);
CREATE INDEX requests_experiment ON requests (experiment_id, arm);
