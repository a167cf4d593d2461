-- Lens jobs submitted through the gateway: which backend holds each one (job ids are the backend's).
CREATE TABLE lens_jobs (
  id           TEXT PRIMARY KEY,             -- the backend's job id (job-<time>-<8 hex>)
  backend_url  TEXT NOT NULL,
  model        TEXT NOT NULL,
  kind         TEXT NOT NULL,
  created_at   INTEGER NOT NULL,             -- unix seconds
  created_by   TEXT NOT NULL,                -- the admin key id
  adapter_id   TEXT                          -- the adapter registered from its artifact, once registered
);
