/**
 * Sends a backend a delta it does not hold: the adapter row names the blob, R2 has the bytes, and
 * the backend's `PUT /internal/v1/deltas/:id` takes them as multipart (manifest + tensors). Then the
 * generation is opened again, once, on that same backend.
 */
import type { GenerateRequest } from "../../protocol/backend.js";
import { DELTAS_PATH } from "../../protocol/delta.js";
import type { LanguageOrUnd } from "../../protocol/languages.js";
import type { GatewayConfig } from "../env.js";
import { adapterByDeltaId } from "./adapters.js";
import { preferenceOrder } from "./backends/affinity.js";
import { type OpenGeneration, openGeneration } from "./backends/client.js";

/** Where deltas are read from: the adapter registry (D1) and its blobs (R2). */
export interface DeltaSource {
  db: D1Database;
  bucket: R2Bucket;
}

// Concurrent requests that miss the same delta on the same backend share one upload.
const inFlight = new Map<string, Promise<boolean>>();

/** Uploads delta `deltaId` from R2 to `backend`; true when the backend accepted it. */
export function pushDelta(config: GatewayConfig, source: DeltaSource, backend: string, deltaId: string): Promise<boolean> {
  const key = `${backend}\n${deltaId}`;
  let pending = inFlight.get(key);
  if (!pending) {
    pending = upload(config, source, backend, deltaId)
      .catch((err: unknown) => {
        console.error(`sending delta ${deltaId} to ${backend} failed`, err);
        return false;
      })
      .finally(() => inFlight.delete(key));
    inFlight.set(key, pending);
  }
  return pending;
}

async function upload(config: GatewayConfig, source: DeltaSource, backend: string, deltaId: string): Promise<boolean> {
  const adapter = await adapterByDeltaId(source.db, deltaId);
  if (!adapter) return false;
  const blob = await source.bucket.get(adapter.r2_key);
  if (!blob) return false;
  const form = new FormData();
  form.set("manifest", JSON.stringify(adapter.manifest));
  form.set("tensors", new File([await blob.arrayBuffer()], `${deltaId}.safetensors`, { type: "application/octet-stream" }));
  const res = await fetch(`${backend}${DELTAS_PATH}/${encodeURIComponent(deltaId)}`, {
    method: "PUT",
    headers: config.backendHeaders,
    body: form,
    signal: AbortSignal.timeout(config.backendTimeoutMs),
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
): Promise<OpenGeneration | null> {
  const target = preferenceOrder(backends, language)[0];
  if (!request.delta || target === undefined) return null;
  if (!(await pushDelta(config, source, target, request.delta.id))) return null;
  try {
    return await openGeneration(config, request, [target]);
  } catch {
    return null;
  }
}
