/**
 * The adapter registry: operators' uploaded deltas, validated before anything is stored, kept once
 * per content (R2 blob at deltas/<sha256>.safetensors, manifest beside it) with one D1 row each.
 * Nothing is left half-written: a failed insert removes the blobs unless a row still needs them.
 */
import {
  type DeltaManifest,
  type DeltaValidationCode,
  parseDeltaManifest,
  validateDelta,
} from "../../../protocol/delta.js";
import type { GatewayConfig } from "../../env.js";
import type { RequestScope } from "../../request-scope.js";
import { GatewayError, notFound } from "../../errors.js";
import { modelShape } from "./model-shape.js";

export interface AdapterRow {
  id: string;
  object: "adapter";
  language: string;
  delta_id: string;
  sha256: string;
  r2_key: string;
  size: number;
  created_at: number;
  created_by: string;
  manifest: DeltaManifest;
}

interface DbRow {
  id: string;
  language: string;
  delta_id: string;
  sha256: string;
  r2_key: string;
  manifest: string;
  size: number;
  created_at: number;
  created_by: string;
}

const COLUMNS = "id, language, delta_id, sha256, r2_key, manifest, size, created_at, created_by";

export const blobKey = (sha256: string) => `deltas/${sha256}.safetensors`;
export const manifestKey = (sha256: string) => `deltas/${sha256}.json`;

function toRow(r: DbRow): AdapterRow {
  return {
    id: r.id,
    object: "adapter",
    language: r.language,
    delta_id: r.delta_id,
    sha256: r.sha256,
    r2_key: r.r2_key,
    size: r.size,
    created_at: r.created_at,
    created_by: r.created_by,
    manifest: JSON.parse(r.manifest) as DeltaManifest,
  };
}

function validationError(code: DeltaValidationCode | "bad_request", message: string): GatewayError {
  const text = `The delta was refused (${code}): ${message}.`;
  switch (code) {
    case "too_large":
      return new GatewayError(413, "invalid_request_error", text, code, "tensors");
    case "fingerprint_mismatch":
      return new GatewayError(409, "invalid_request_error", text, code, "manifest");
    case "manifest_invalid":
      return new GatewayError(400, "invalid_request_error", text, code, "manifest");
    case "bad_request":
      return new GatewayError(400, "invalid_request_error", text, code);
    default:
      return new GatewayError(400, "invalid_request_error", text, code, "tensors");
  }
}

/** A request-level refusal of an upload, before validation proper (missing field, bad JSON). */
export const badUpload = (message: string) => validationError("bad_request", message);

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  let hex = "";
  for (const b of digest) hex += b.toString(16).padStart(2, "0");
  return hex;
}

function newAdapterId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return `ad_${s}`;
}

export async function getAdapter(db: D1Database, id: string): Promise<AdapterRow | null> {
  const r = await db.prepare(`SELECT ${COLUMNS} FROM adapters WHERE id = ?1`).bind(id).first<DbRow>();
  return r ? toRow(r) : null;
}

export async function adapterByDeltaId(db: D1Database, deltaId: string): Promise<AdapterRow | null> {
  const r = await db.prepare(`SELECT ${COLUMNS} FROM adapters WHERE delta_id = ?1`).bind(deltaId).first<DbRow>();
  return r ? toRow(r) : null;
}

async function adapterBySha(db: D1Database, sha256: string): Promise<AdapterRow | null> {
  const r = await db.prepare(`SELECT ${COLUMNS} FROM adapters WHERE sha256 = ?1`).bind(sha256).first<DbRow>();
  return r ? toRow(r) : null;
}

export async function listAdapters(db: D1Database): Promise<AdapterRow[]> {
  const { results } = await db.prepare(`SELECT ${COLUMNS} FROM adapters ORDER BY created_at, id`).all<DbRow>();
  return results.map(toRow);
}

/** Removes the blobs of `sha256` unless some row still references that content. */
async function dropBlobsIfUnused(db: D1Database, bucket: R2Bucket, sha256: string): Promise<void> {
  const used = await db.prepare("SELECT 1 AS one FROM adapters WHERE sha256 = ?1").bind(sha256).first();
  if (!used) await bucket.delete([blobKey(sha256), manifestKey(sha256)]);
}

export interface UploadInput {
  bytes: Uint8Array<ArrayBuffer>;
  /** The manifest as sent (already JSON-parsed, not yet validated). */
  manifest: unknown;
  createdBy: string;
  maxBytes: number;
}

export interface UploadResult {
  adapter: AdapterRow;
  /** false when the same content was already stored: the existing row is returned. */
  created: boolean;
}

/**
 * D1 and R2 share no transaction: a delete racing an upload of the same content can remove the
 * blobs after the upload's row went in. Uploading the same file again repairs that here.
 */
async function restoreBlobsIfMissing(
  bucket: R2Bucket,
  adapter: AdapterRow,
  bytes: Uint8Array<ArrayBuffer>,
): Promise<void> {
  const [blob, manifest] = await Promise.all([bucket.head(adapter.r2_key), bucket.head(manifestKey(adapter.sha256))]);
  if (!manifest)
    await bucket.put(manifestKey(adapter.sha256), JSON.stringify(adapter.manifest), {
      httpMetadata: { contentType: "application/json" },
    });
  if (!blob)
    await bucket.put(adapter.r2_key, bytes, {
      sha256: adapter.sha256,
      httpMetadata: { contentType: "application/octet-stream" },
    });
}

/** Validates a delta against the model its manifest names, then stores it once per content. */
export async function uploadAdapter(
  config: GatewayConfig,
  db: D1Database,
  bucket: R2Bucket,
  input: UploadInput,
  scope: RequestScope,
): Promise<UploadResult> {
  if (input.bytes.byteLength > input.maxBytes) {
    throw validationError(
      "too_large",
      `file is ${input.bytes.byteLength} bytes, over the ${input.maxBytes}-byte limit`,
    );
  }
  // The manifest is checked in full before any backend is asked anything.
  const parsed = parseDeltaManifest(input.manifest);
  if (!parsed.ok) throw validationError(parsed.error.code, parsed.error.message);

  const shape = await modelShape(config, parsed.manifest.base_model.id, scope);
  const checked = validateDelta(input.bytes, input.manifest, {
    fingerprint: shape.fingerprint,
    hiddenSize: shape.hiddenSize,
    numLayers: shape.numLayers,
    maxBytes: input.maxBytes,
  });
  if (!checked.ok) throw validationError(checked.error.code, checked.error.message);
  const manifest = checked.delta.manifest;

  const sha256 = await sha256Hex(input.bytes);
  const existing = await adapterBySha(db, sha256);
  if (existing) {
    await restoreBlobsIfMissing(bucket, existing, input.bytes);
    return { adapter: existing, created: false };
  }
  const sameId = await adapterByDeltaId(db, manifest.id);
  if (sameId) throw deltaIdTaken(manifest.id, sameId.id);

  const manifestText = JSON.stringify(manifest);
  const row: DbRow = {
    id: newAdapterId(),
    language: manifest.language,
    delta_id: manifest.id,
    sha256,
    r2_key: blobKey(sha256),
    manifest: manifestText,
    size: input.bytes.byteLength,
    created_at: Math.floor(Date.now() / 1000),
    created_by: input.createdBy,
  };
  try {
    await bucket.put(manifestKey(sha256), manifestText, { httpMetadata: { contentType: "application/json" } });
    await bucket.put(row.r2_key, input.bytes, { sha256, httpMetadata: { contentType: "application/octet-stream" } });
  } catch (err) {
    // A put that failed after the first succeeded would leave an orphan object: remove what was written.
    await dropBlobsIfUnused(db, bucket, sha256).catch(() => {});
    throw err;
  }

  let inserted: boolean;
  try {
    const res = await db
      .prepare(`INSERT INTO adapters (${COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING`)
      .bind(
        row.id,
        row.language,
        row.delta_id,
        row.sha256,
        row.r2_key,
        row.manifest,
        row.size,
        row.created_at,
        row.created_by,
      )
      .run();
    inserted = res.meta.changes === 1;
  } catch (err) {
    await dropBlobsIfUnused(db, bucket, sha256).catch(() => {});
    throw err;
  }
  if (inserted) return { adapter: toRow(row), created: true };

  // Lost a race: the same content (kept, one row and one blob) or the same delta id (refused).
  const winner = await adapterBySha(db, sha256);
  if (winner) {
    // The blob bytes are identical; the manifest beside it must be the stored row's.
    if (JSON.stringify(winner.manifest) !== manifestText) {
      await bucket.put(manifestKey(sha256), JSON.stringify(winner.manifest), {
        httpMetadata: { contentType: "application/json" },
      });
    }
    return { adapter: winner, created: false };
  }
  await dropBlobsIfUnused(db, bucket, sha256);
  const other = await adapterByDeltaId(db, manifest.id);
  throw deltaIdTaken(manifest.id, other?.id ?? "another upload");
}

function deltaIdTaken(deltaId: string, adapterId: string): GatewayError {
  return new GatewayError(
    409,
    "invalid_request_error",
    `The delta id '${deltaId}' is already used by adapter ${adapterId} with different content; give the new version its own manifest.id.`,
    "delta_id_taken",
    "manifest",
  );
}

/** Deletes an adapter that no language has active; its blobs go when no other row needs them. */
/** An experiment not yet stopped with an arm on adapter ?1 (arms are JSON: [{ delta: adapter id, ... }]). */
const USED_BY_EXPERIMENT =
  "e.state != 'stopped' AND EXISTS (SELECT 1 FROM json_each(e.arms) a WHERE json_extract(a.value, '$.delta') = ?1)";

export async function deleteAdapter(db: D1Database, bucket: R2Bucket, id: string): Promise<AdapterRow> {
  const adapter = await getAdapter(db, id);
  if (!adapter) throw notFound(`No adapter with id '${id}'.`, "adapter_not_found");
  const active = await db
    .prepare("SELECT language FROM language_deltas WHERE delta_id = ?1 OR adapter_id = ?2 ORDER BY language")
    .bind(adapter.delta_id, adapter.id)
    .all<{ language: string }>();
  if (active.results.length > 0) {
    const langs = active.results.map((r) => r.language).join(", ");
    throw new GatewayError(
      409,
      "invalid_request_error",
      `Adapter ${id} is active for ${langs}; activate another adapter (or none) first.`,
      "adapter_active",
    );
  }
  const inExperiment = await db
    .prepare(`SELECT e.id FROM experiments e WHERE ${USED_BY_EXPERIMENT} LIMIT 1`)
    .bind(adapter.id)
    .first<{ id: string }>();
  if (inExperiment) {
    throw new GatewayError(
      409,
      "invalid_request_error",
      `Adapter ${id} is an arm of experiment ${inExperiment.id}; stop the experiment first.`,
      "adapter_in_experiment",
    );
  }
  // The guard is in the statement itself, so an activation racing this delete cannot be orphaned.
  const res = await db
    .prepare(
      "DELETE FROM adapters WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM language_deltas WHERE delta_id = ?2 OR adapter_id = ?1)" +
        ` AND NOT EXISTS (SELECT 1 FROM experiments e WHERE ${USED_BY_EXPERIMENT})`,
    )
    .bind(adapter.id, adapter.delta_id)
    .run();
  if (res.meta.changes !== 1) {
    throw new GatewayError(
      409,
      "invalid_request_error",
      `Adapter ${id} became active or was deleted meanwhile; nothing was deleted.`,
      "adapter_active",
    );
  }
  await dropBlobsIfUnused(db, bucket, adapter.sha256);
  return adapter;
}
