-- Per-key rate limits for chat requests. NULL: the deployment's default (RATE_LIMIT_RPM /
-- RATE_LIMIT_TPM); 0: no limit for this key.
ALTER TABLE api_keys ADD COLUMN requests_per_minute INTEGER CHECK (requests_per_minute IS NULL OR requests_per_minute >= 0);
ALTER TABLE api_keys ADD COLUMN tokens_per_minute INTEGER CHECK (tokens_per_minute IS NULL OR tokens_per_minute >= 0);
