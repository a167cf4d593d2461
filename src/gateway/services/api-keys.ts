/**
 * API keys: generated here, shown once, stored only as SHA-256 hashes in D1.
 * Verified keys are cached per isolate for a short time so that a chat request costs no D1 read
 * and no hashing (the hash was 10% of a chat request's CPU in a profile); a revoked key therefore
 * keeps working in other isolates for up to KEY_CACHE_MS. The cache lives in memory only.
 */
export type KeyScope = "client" | "admin";

export interface ApiKeyRecord {
  id: string;
  key_prefix: string;
  scope: KeyScope;
  name: string;
  created_at: number;
  revoked_at: number | null;
}

export const KEY_CACHE_MS = 30_000;
const KEY_CACHE_MAX = 10_000;
/** Presented key -> verification result; also holds the hash so that revocation can find it. */
const cache = new Map<string, { id: string; scope: KeyScope; hash: string; until: number }>();

export async function hashKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Returns the key's id and scope, or null when the key is unknown or revoked. */
export async function verifyKey(db: D1Database, key: string, now = Date.now()): Promise<{ id: string; scope: KeyScope } | null> {
  const hit = cache.get(key);
  if (hit && hit.until > now) return hit;
  const hash = await hashKey(key);
  const row = await db
    .prepare("SELECT id, scope FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL")
    .bind(hash)
    .first<{ id: string; scope: KeyScope }>();
  if (!row) {
    cache.delete(key);
    return null;
  }
  if (cache.size >= KEY_CACHE_MAX) cache.clear();
  cache.set(key, { id: row.id, scope: row.scope, hash, until: now + KEY_CACHE_MS });
  return row;
}

function randomToken(bytes: number): string {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  let s = "";
  for (const b of raw) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export async function createKey(db: D1Database, scope: KeyScope, name: string): Promise<{ key: string; record: ApiKeyRecord }> {
  const key = `lens-${scope === "admin" ? "admin-" : ""}${randomToken(24)}`;
  const record: ApiKeyRecord = {
    id: `key_${randomToken(9)}`,
    key_prefix: key.slice(0, 12),
    scope,
    name,
    created_at: Math.floor(Date.now() / 1000),
    revoked_at: null,
  };
  await db
    .prepare("INSERT INTO api_keys (id, key_hash, key_prefix, scope, name, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
    .bind(record.id, await hashKey(key), record.key_prefix, scope, name, record.created_at)
    .run();
  return { key, record };
}

export async function listKeys(db: D1Database): Promise<ApiKeyRecord[]> {
  const { results } = await db
    .prepare("SELECT id, key_prefix, scope, name, created_at, revoked_at FROM api_keys ORDER BY created_at, id")
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
