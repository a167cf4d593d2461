/**
 * API keys: generated here, shown once, stored only as SHA-256 hashes in D1.
 * Verified keys are cached per isolate for a short time so that a chat request costs no D1 read
 * and no hashing (the hash was 10% of a chat request's CPU in a profile); a revoked key therefore
 * keeps working in other isolates for up to KEY_CACHE_MS. The cache lives in memory only.
 */
import type { StoredKeyLimits } from "../env.js";

export type KeyScope = "client" | "admin";

export interface ApiKeyRecord {
  id: string;
  key_prefix: string;
  scope: KeyScope;
  name: string;
  created_at: number;
  revoked_at: number | null;
  /** Chat limits; null: the deployment default; 0: none. */
  requests_per_minute: number | null;
  tokens_per_minute: number | null;
}

export interface VerifiedKey {
  id: string;
  scope: KeyScope;
  limits: StoredKeyLimits;
}

const KEY_CACHE_MS = 30_000;
const KEY_CACHE_MAX = 10_000;
/** Presented key -> verification result; also holds the hash so that revocation can find it. */
const cache = new Map<string, VerifiedKey & { hash: string; until: number }>();

export async function hashKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Returns the key's id, scope and limits, or null when the key is unknown or revoked. */
export async function verifyKey(db: D1Database, key: string, now = Date.now()): Promise<VerifiedKey | null> {
  const hit = cache.get(key);
  if (hit && hit.until > now) return hit;
  const hash = await hashKey(key);
  const row = await db
    .prepare(
      "SELECT id, scope, requests_per_minute, tokens_per_minute FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL",
    )
    .bind(hash)
    .first<{ id: string; scope: KeyScope; requests_per_minute: number | null; tokens_per_minute: number | null }>();
  if (!row) {
    cache.delete(key);
    return null;
  }
  const verified: VerifiedKey = {
    id: row.id,
    scope: row.scope,
    limits: { requestsPerMinute: row.requests_per_minute, tokensPerMinute: row.tokens_per_minute },
  };
  if (cache.size >= KEY_CACHE_MAX) cache.clear();
  cache.set(key, { ...verified, hash, until: now + KEY_CACHE_MS });
  return verified;
}

function randomToken(bytes: number): string {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  let s = "";
  for (const b of raw) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export async function createKey(
  db: D1Database,
  scope: KeyScope,
  name: string,
  limits: StoredKeyLimits = { requestsPerMinute: null, tokensPerMinute: null },
): Promise<{ key: string; record: ApiKeyRecord }> {
  const key = `lens-${scope === "admin" ? "admin-" : ""}${randomToken(24)}`;
  const record: ApiKeyRecord = {
    id: `key_${randomToken(9)}`,
    key_prefix: key.slice(0, 12),
    scope,
    name,
    created_at: Math.floor(Date.now() / 1000),
    revoked_at: null,
    requests_per_minute: limits.requestsPerMinute,
    tokens_per_minute: limits.tokensPerMinute,
  };
  await db
    .prepare(
      "INSERT INTO api_keys (id, key_hash, key_prefix, scope, name, created_at, requests_per_minute, tokens_per_minute) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(
      record.id,
      await hashKey(key),
      record.key_prefix,
      scope,
      name,
      record.created_at,
      record.requests_per_minute,
      record.tokens_per_minute,
    )
    .run();
  return { key, record };
}

export async function listKeys(db: D1Database): Promise<ApiKeyRecord[]> {
  const { results } = await db
    .prepare(
      "SELECT id, key_prefix, scope, name, created_at, revoked_at, requests_per_minute, tokens_per_minute FROM api_keys ORDER BY created_at, id",
    )
    .all<ApiKeyRecord>();
  return results;
}

/** Marks a key revoked; returns false when no such active key exists. */
export async function revokeKey(db: D1Database, id: string): Promise<boolean> {
  const row = await db
    .prepare("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL RETURNING key_hash")
    .bind(id, Math.floor(Date.now() / 1000))
    .first<{ key_hash: string }>();
  if (row) {
    for (const [key, entry] of cache) if (entry.hash === row.key_hash) cache.delete(key);
  }
  return row !== null;
}

/**
 * Changes a key's limits (only the fields given; null restores the deployment default). Takes
 * effect at once in this isolate and within KEY_CACHE_MS elsewhere. null when no such active key.
 */
export async function setKeyLimits(
  db: D1Database,
  id: string,
  limits: Partial<StoredKeyLimits>,
): Promise<ApiKeyRecord | null> {
  const sets: string[] = [];
  const values: Array<number | null> = [];
  if (limits.requestsPerMinute !== undefined) {
    values.push(limits.requestsPerMinute);
    sets.push(`requests_per_minute = ?${values.length + 1}`);
  }
  if (limits.tokensPerMinute !== undefined) {
    values.push(limits.tokensPerMinute);
    sets.push(`tokens_per_minute = ?${values.length + 1}`);
  }
  const columns = "id, key_prefix, scope, name, created_at, revoked_at, requests_per_minute, tokens_per_minute";
  const row =
    sets.length === 0
      ? await db
          .prepare(`SELECT ${columns} FROM api_keys WHERE id = ?1 AND revoked_at IS NULL`)
          .bind(id)
          .first<ApiKeyRecord>()
      : await db
          .prepare(`UPDATE api_keys SET ${sets.join(", ")} WHERE id = ?1 AND revoked_at IS NULL RETURNING ${columns}`)
          .bind(id, ...values)
          .first<ApiKeyRecord>();
  if (row) {
    for (const [key, entry] of cache) if (entry.id === id) cache.delete(key);
  }
  return row;
}
