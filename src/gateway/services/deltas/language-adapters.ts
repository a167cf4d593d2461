/**
 * Which adapter each language's requests carry: `language_deltas` rows set from adapter versions,
 * with the previous version kept for a one-step rollback. delta_id is always the adapter's delta id
 * (the name backends know), adapter_id the version it came from.
 */
import type { Language } from "../../../protocol/languages.js";
import { GatewayError, notFound } from "../../errors.js";
import { getAdapter } from "./adapters.js";
import { forgetActiveDeltas } from "./active-deltas.js";

export interface LanguageDeltaRow {
  language: string;
  delta_id: string;
  adapter_id: string | null;
  scale: number;
  previous_delta_id: string | null;
  previous_adapter_id: string | null;
  previous_scale: number | null;
  updated_at: number;
}

const COLUMNS =
  "language, delta_id, adapter_id, scale, previous_delta_id, previous_adapter_id, previous_scale, updated_at";

export async function listLanguageDeltas(db: D1Database): Promise<LanguageDeltaRow[]> {
  const { results } = await db
    .prepare(`SELECT ${COLUMNS} FROM language_deltas ORDER BY language`)
    .all<LanguageDeltaRow>();
  return results;
}

async function getLanguageDelta(db: D1Database, language: string): Promise<LanguageDeltaRow | null> {
  return db
    .prepare(`SELECT ${COLUMNS} FROM language_deltas WHERE language = ?1`)
    .bind(language)
    .first<LanguageDeltaRow>();
}

/**
 * Makes `adapterId` the language's delta at `scale` (the current one becomes the rollback target),
 * or, with null, serves the language with the base model again (the row goes, and its rollback).
 */
export async function setLanguageAdapter(
  db: D1Database,
  language: Language,
  adapterId: string | null,
  scale: number,
): Promise<LanguageDeltaRow | null> {
  if (adapterId === null) {
    await db.prepare("DELETE FROM language_deltas WHERE language = ?1").bind(language).run();
    forgetActiveDeltas();
    return null;
  }
  const adapter = await getAdapter(db, adapterId);
  if (!adapter) throw notFound(`No adapter with id '${adapterId}'.`, "adapter_not_found", "adapter");
  if (adapter.language !== language) {
    throw new GatewayError(
      400,
      "invalid_request_error",
      `Adapter ${adapterId} is for '${adapter.language}', not '${language}'.`,
      "language_mismatch",
      "adapter",
    );
  }
  const now = Math.floor(Date.now() / 1000);
  // One statement: the previous version is whatever the row held at that instant; re-activating
  // the current version changes its scale and keeps the rollback target.
  await db
    .prepare(
      `INSERT INTO language_deltas (language, delta_id, adapter_id, scale, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
       ON CONFLICT(language) DO UPDATE SET
         previous_delta_id   = CASE WHEN language_deltas.delta_id = excluded.delta_id THEN language_deltas.previous_delta_id ELSE language_deltas.delta_id END,
         previous_adapter_id = CASE WHEN language_deltas.delta_id = excluded.delta_id THEN language_deltas.previous_adapter_id ELSE language_deltas.adapter_id END,
         previous_scale      = CASE WHEN language_deltas.delta_id = excluded.delta_id THEN language_deltas.previous_scale ELSE language_deltas.scale END,
         delta_id = excluded.delta_id, adapter_id = excluded.adapter_id, scale = excluded.scale, updated_at = excluded.updated_at`,
    )
    .bind(language, adapter.delta_id, adapter.id, scale, now)
    .run();
  forgetActiveDeltas();
  return getLanguageDelta(db, language);
}

/** Swaps the language's current and previous delta. */
export async function rollbackLanguage(db: D1Database, language: Language): Promise<LanguageDeltaRow> {
  const row = await getLanguageDelta(db, language);
  if (!row?.previous_delta_id) {
    throw new GatewayError(
      409,
      "invalid_request_error",
      `Language '${language}' has no previous delta to roll back to.`,
      "nothing_to_roll_back",
    );
  }
  if (row.previous_adapter_id && !(await getAdapter(db, row.previous_adapter_id))) {
    throw new GatewayError(
      409,
      "invalid_request_error",
      `The previous adapter ${row.previous_adapter_id} of '${language}' was deleted; activate a version instead.`,
      "previous_adapter_deleted",
    );
  }
  const now = Math.floor(Date.now() / 1000);
  const res = await db
    .prepare(
      `UPDATE language_deltas SET
         delta_id = previous_delta_id, adapter_id = previous_adapter_id, scale = COALESCE(previous_scale, 1),
         previous_delta_id = delta_id, previous_adapter_id = adapter_id, previous_scale = scale, updated_at = ?3
       WHERE language = ?1 AND delta_id = ?2 AND previous_delta_id IS NOT NULL`,
    )
    .bind(language, row.delta_id, now)
    .run();
  if (res.meta.changes !== 1) {
    throw new GatewayError(
      409,
      "invalid_request_error",
      `Language '${language}' changed meanwhile; nothing was rolled back.`,
      "conflict",
    );
  }
  forgetActiveDeltas();
  return (await getLanguageDelta(db, language))!;
}
