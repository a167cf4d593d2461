-- Operators' uploaded deltas ("adapters"): one row per distinct safetensors content.
-- id is the version id the gateway makes (ad_...); delta_id is the manifest's id, the name the
-- backends know it by (one content per delta id); the blob lives in R2 at r2_key
-- (deltas/<sha256>.safetensors, manifest beside it at deltas/<sha256>.json).
CREATE TABLE adapters (
  id          TEXT PRIMARY KEY,
  language    TEXT NOT NULL,
  delta_id    TEXT NOT NULL UNIQUE,
  sha256      TEXT NOT NULL UNIQUE,
  r2_key      TEXT NOT NULL,
  manifest    TEXT NOT NULL,
  size        INTEGER NOT NULL,
  created_at  INTEGER NOT NULL,
  created_by  TEXT NOT NULL
);
CREATE INDEX adapters_language ON adapters (language, created_at);

-- Which adapter version a language's delta came from, and the previous one's scale, for rollback.
ALTER TABLE language_deltas ADD COLUMN adapter_id TEXT;
ALTER TABLE language_deltas ADD COLUMN previous_adapter_id TEXT;
ALTER TABLE language_deltas ADD COLUMN previous_scale REAL;
