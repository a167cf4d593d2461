-- The delta that each language's chat requests carry; a language without a row gets the base model.
-- previous_delta_id keeps the version before the current one, for a one-step rollback.
CREATE TABLE language_deltas (
  language          TEXT PRIMARY KEY,
  delta_id          TEXT NOT NULL,
  scale             REAL NOT NULL DEFAULT 1,
  previous_delta_id TEXT,
  updated_at        INTEGER NOT NULL
);
