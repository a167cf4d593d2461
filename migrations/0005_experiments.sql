-- A/B experiments: a language's requests split between arms (each a delta or the base model).
-- languages: JSON array of language tags; arms: JSON array of
-- {name, delta (adapter version id | null), delta_id (that adapter's delta id), scale, weight}.
CREATE TABLE experiments (
  id            TEXT PRIMARY KEY,
  name          TEXT NOT NULL,
  languages     TEXT NOT NULL,
  arms          TEXT NOT NULL,
  state         TEXT NOT NULL CHECK (state IN ('running', 'paused', 'stopped')),
  promoted_arm  TEXT,
  created_at    INTEGER NOT NULL,
  created_by    TEXT NOT NULL,
  updated_at    INTEGER NOT NULL
);

-- One row per language of each running experiment: the primary key keeps it to one per language.
CREATE TABLE experiment_running (
  language       TEXT PRIMARY KEY,
  experiment_id  TEXT NOT NULL
);
