-- API keys, stored only as SHA-256 hashes of the full key.
-- scope 'client' may call /v1/*, scope 'admin' may call /admin/*.
CREATE TABLE api_keys (
  id          TEXT PRIMARY KEY,
  key_hash    TEXT NOT NULL UNIQUE,
  key_prefix  TEXT NOT NULL,
  scope       TEXT NOT NULL CHECK (scope IN ('client', 'admin')),
  name        TEXT NOT NULL DEFAULT '',
  created_at  INTEGER NOT NULL,
  revoked_at  INTEGER
);
