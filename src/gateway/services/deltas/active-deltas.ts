/**
 * Which delta a language's requests carry, read from D1 and kept per isolate for a few seconds so
 * that a chat request normally costs no D1 read; a change reaches every isolate within CACHE_MS.
 */
import type { DeltaRef } from "../../../protocol/backend.js";
import { type Deadline, storageTimeout } from "../../deadline.js";

const CACHE_MS = 10_000;
const cache = new Map<string, { delta: DeltaRef | null; until: number }>();

export async function activeDelta(
  db: D1Database,
  language: string,
  deadline: Deadline,
  now = Date.now(),
): Promise<DeltaRef | null> {
  const hit = cache.get(language);
  if (hit && hit.until > now) return hit.delta;
  let row: { delta_id: string; scale: number } | null;
  try {
    const read = db
      .prepare("SELECT delta_id, scale FROM language_deltas WHERE language = ?1")
      .bind(language)
      .first<{ delta_id: string; scale: number }>();
    row = await deadline.optional(read, () => storageTimeout("database (D1)"));
  } catch (err) {
    // A delta must never fail a request: without the registry, the base model answers.
    console.error("reading language_deltas failed; serving without a delta", err);
    return null;
  }
  const delta = row ? { id: row.delta_id, scale: row.scale } : null;
  cache.set(language, { delta, until: now + CACHE_MS });
  return delta;
}

/** Forgets cached answers (after a change made through this isolate). */
export function forgetActiveDeltas(): void {
  cache.clear();
}
