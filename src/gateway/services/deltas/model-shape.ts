/**
 * What an uploaded delta is checked against: the base model as a backend serving it describes
 * itself (`GET /internal/v1/health`), kept per isolate for a few seconds (answers only: each request
 * that finds none asks itself, within its deadline).
 */
import { z } from "zod";
import { HEALTH_PATH } from "../../../protocol/backend.js";
import { Fingerprint } from "../../../protocol/delta.js";
import type { GatewayConfig } from "../../env.js";
import { noBackend } from "../../errors.js";
import type { RequestScope } from "../../request-scope.js";
import { backendsFor } from "../backends/catalog.js";

const HEALTH_CACHE_MS = 5_000;
const HEALTH_TIMEOUT_MS = 5_000;

const BackendHealth = z.object({
  model: z.string(),
  fingerprint: Fingerprint,
  hidden_size: z.number().int().positive(),
  num_layers: z.number().int().positive(),
});

export interface ModelShape {
  model: string;
  fingerprint: string;
  hiddenSize: number;
  numLayers: number;
}

const cache = new Map<string, { shape: ModelShape; until: number }>();

async function askHealth(config: GatewayConfig, url: string, timeoutMs: number): Promise<ModelShape | null> {
  try {
    const res = await fetch(url + HEALTH_PATH, {
      headers: config.backendHeaders,
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) {
      await res.body?.cancel();
      return null;
    }
    const parsed = BackendHealth.safeParse(await res.json());
    if (!parsed.success) return null;
    const h = parsed.data;
    return { model: h.model, fingerprint: h.fingerprint, hiddenSize: h.hidden_size, numLayers: h.num_layers };
  } catch {
    return null;
  }
}

/** The shape of `model` as the first backend serving it that answers says; 503 when none can. */
export async function modelShape(
  config: GatewayConfig,
  model: string,
  scope: RequestScope,
  now = Date.now(),
): Promise<ModelShape> {
  const { backends } = await backendsFor(config, model, scope);
  if (backends.length === 0)
    throw noBackend(
      `No backend serves the model '${model}' named in manifest.base_model.id, so the delta cannot be checked against it.`,
    );
  for (const url of backends) {
    const timeout = Math.max(1, Math.min(config.backendTimeoutMs, HEALTH_TIMEOUT_MS, scope.deadline.budget()));
    const key = `${url}\n${model}`;
    const hit = cache.get(key);
    if (hit && hit.until > now) return hit.shape;
    const shape = await askHealth(config, url, timeout);
    // A backend describing another model says nothing about this one.
    if (shape && shape.model === model) {
      cache.set(key, { shape, until: now + HEALTH_CACHE_MS });
      return shape;
    }
  }
  throw noBackend(
    `No backend serving '${model}' could say what the model is (fingerprint, hidden size, layers); try again shortly.`,
  );
}
