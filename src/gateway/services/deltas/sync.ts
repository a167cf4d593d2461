/**
 * Sends a backend a delta it does not hold: the adapter row names the blob, R2 has the bytes, and
 * the backend's `PUT /internal/v1/deltas/:id` takes them as multipart (manifest + tensors). Then the
 * generation is opened again, once, on that same backend.
 *
 * Each request that misses a delta sends it itself, within its own deadline, even when another
 * request is sending the same one: an upload shared between requests dies with the request that
 * started it, and whoever waited on it would wait forever. The backend's PUT is idempotent.
 */
import type { GenerateRequest } from "../../../protocol/backend.js";
import { DELTAS_PATH } from "../../../protocol/delta.js";
import type { LanguageOrUnd } from "../../../protocol/languages.js";
import { storageTimeout } from "../../deadline.js";
import type { GatewayConfig } from "../../env.js";
import { backendTimeout } from "../../errors.js";
import type { RequestScope } from "../../request-scope.js";
import { adapterByDeltaId } from "./adapters.js";
import { preferenceOrder } from "../backends/affinity.js";
import { type OpenGeneration, openGeneration } from "../backends/client.js";

/** Where deltas are read from: the adapter registry (D1) and its blobs (R2). */
export interface DeltaSource {
  db: D1Database;
  bucket: R2Bucket;
}

/** Uploads delta `deltaId` from R2 to `backend`; true when the backend accepted it in time. */
async function pushDelta(
  config: GatewayConfig,
  source: DeltaSource,
  backend: string,
  deltaId: string,
  scope: RequestScope,
): Promise<boolean> {
  try {
    return await upload(config, source, backend, deltaId, scope);
  } catch (err) {
    console.error(`sending delta ${deltaId} to ${backend} failed`, err);
    return false;
  }
}

async function upload(
  config: GatewayConfig,
  source: DeltaSource,
  backend: string,
  deltaId: string,
  scope: RequestScope,
): Promise<boolean> {
  // Sending the delta is optional (without it the base model answers): each step gets at most a
  // share of the deadline, so that a hung D1, R2 or backend leaves time to answer without it.
  const { deadline } = scope;
  const adapter = await deadline.optional(adapterByDeltaId(source.db, deltaId), () => storageTimeout("database (D1)"));
  if (!adapter) return false;
  const late = () => storageTimeout("object store (R2)");
  const blob = await deadline.optional(source.bucket.get(adapter.r2_key), late);
  if (!blob) return false;
  const bytes = await deadline.optional(blob.arrayBuffer(), late);
  const form = new FormData();
  form.set("manifest", JSON.stringify(adapter.manifest));
  form.set("tensors", new File([bytes], `${deltaId}.safetensors`, { type: "application/octet-stream" }));
  const controller = new AbortController();
  const put = fetch(`${backend}${DELTAS_PATH}/${encodeURIComponent(deltaId)}`, {
    method: "PUT",
    headers: config.backendHeaders,
    body: form,
    signal: controller.signal,
  });
  const res = await deadline.optional(put, () => {
    controller.abort();
    return backendTimeout("The backend did not take the delta in time.");
  });
  await res.body?.cancel();
  return res.ok;
}

/**
 * After a `delta_not_loaded` refusal: sends the delta to the backend that refused (the first live
 * one in the language's order; one that could not be reached was marked down) and retries there
 * once. null when anything fails, so that the caller serves the base model.
 */
export async function retryWithDelta(
  config: GatewayConfig,
  source: DeltaSource,
  request: GenerateRequest,
  backends: readonly string[],
  language: LanguageOrUnd,
  scope: RequestScope,
): Promise<OpenGeneration | null> {
  const target = preferenceOrder(backends, language)[0];
  if (!request.delta || target === undefined) return null;
  if (!(await pushDelta(config, source, target, request.delta.id, scope))) return null;
  try {
    return await openGeneration(config, request, [target], scope.deadline);
  } catch {
    return null;
  }
}
