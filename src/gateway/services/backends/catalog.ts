/**
 * Which models the backends serve, asked of the backends themselves and kept per isolate for a
 * few seconds: chat requests read it from memory, and a stale copy is refreshed in the background.
 */
import { type BackendModel, MODELS_PATH, ModelsResponse } from "../../../protocol/backend.js";
import type { GatewayConfig } from "../../env.js";
import { backendFailure } from "../../errors.js";
import { markDown, markUp } from "./health.js";

export interface Catalog {
  fetchedAt: number;
  models: BackendModel[];
  /** Backends serving each model id, in configuration order. */
  backendsByModel: Map<string, string[]>;
  /** Backends that refused the gateway's shared secret (401): a configuration error worth naming. */
  refusedCredentials: string[];
}

const FRESH_MS = 10_000;
const STALE_MS = 60_000;
/** An empty catalog (no backend answered) is retried this soon. */
const EMPTY_RETRY_MS = 1_000;
/** An unknown model may force a refresh, but not more often than this. */
const FORCED_REFRESH_MS = 2_000;
const CATALOG_TIMEOUT_MS = 5_000;

interface Entry {
  catalog?: Catalog;
  pending?: Promise<Catalog>;
}
const entries = new Map<string, Entry>();

async function fetchModels(url: string, timeoutMs: number, headers: Readonly<Record<string, string>>): Promise<BackendModel[] | "unauthorized" | null> {
  try {
    const res = await fetch(url + MODELS_PATH, { headers, signal: AbortSignal.timeout(timeoutMs) });
    if (res.status === 401) {
      await res.body?.cancel();
      console.error(`backend ${url} refused the gateway's BACKEND_SECRET`);
      return "unauthorized";
    }
    if (!res.ok) {
      await res.body?.cancel();
      return null;
    }
    const parsed = ModelsResponse.safeParse(await res.json());
    if (!parsed.success) return null;
    markUp(url);
    return parsed.data.models;
  } catch {
    markDown(url);
    return null;
  }
}

async function build(config: GatewayConfig): Promise<Catalog> {
  const timeout = Math.min(config.backendTimeoutMs, CATALOG_TIMEOUT_MS);
  const answers = await Promise.all(config.backendUrls.map((url) => fetchModels(url, timeout, config.backendHeaders)));
  const models = new Map<string, BackendModel>();
  const backendsByModel = new Map<string, string[]>();
  const refusedCredentials: string[] = [];
  answers.forEach((list, i) => {
    const url = config.backendUrls[i] as string;
    if (list === "unauthorized") {
      refusedCredentials.push(url);
      return;
    }
    for (const model of list ?? []) {
      if (!models.has(model.id)) models.set(model.id, model);
      const urls = backendsByModel.get(model.id) ?? [];
      urls.push(url);
      backendsByModel.set(model.id, urls);
    }
  });
  return { fetchedAt: Date.now(), models: [...models.values()], backendsByModel, refusedCredentials };
}

function refresh(config: GatewayConfig, entry: Entry): Promise<Catalog> {
  entry.pending ??= build(config)
    .then((catalog) => {
      entry.catalog = catalog;
      return catalog;
    })
    .finally(() => {
      entry.pending = undefined;
    });
  return entry.pending;
}

function entryFor(config: GatewayConfig): Entry {
  // The credentials are part of the key: the same backends answer differently to another secret.
  const key = `${config.backendUrls.join(",")}\n${config.backendHeaders["authorization"] ?? ""}`;
  let entry = entries.get(key);
  if (!entry) {
    entry = {};
    entries.set(key, entry);
  }
  return entry;
}

/**
 * The current catalog. `waitUntil` lets a stale-but-usable catalog be refreshed after the response.
 */
export async function getCatalog(config: GatewayConfig, waitUntil?: (p: Promise<unknown>) => void, now = Date.now()): Promise<Catalog> {
  const entry = entryFor(config);
  const catalog = entry.catalog;
  if (catalog) {
    const age = now - catalog.fetchedAt;
    const empty = catalog.models.length === 0;
    if (age < (empty ? EMPTY_RETRY_MS : FRESH_MS)) return catalog;
    if (!empty && age < STALE_MS) {
      const pending = refresh(config, entry);
      waitUntil?.(pending.catch(() => {}));
      return catalog;
    }
  }
  return refresh(config, entry);
}

/** Backends serving `model`; refreshes once if the model is unknown to a catalog that is not brand new. */
export async function backendsFor(config: GatewayConfig, model: string, waitUntil?: (p: Promise<unknown>) => void): Promise<{ catalog: Catalog; backends: string[] }> {
  let catalog = await getCatalog(config, waitUntil);
  let backends = catalog.backendsByModel.get(model);
  if (!backends && Date.now() - catalog.fetchedAt > FORCED_REFRESH_MS) {
    catalog = await refresh(config, entryFor(config));
    backends = catalog.backendsByModel.get(model);
  }
  if (!backends && catalog.refusedCredentials.length > 0) {
    // Saying "no such model" here would send the operator looking in the wrong place.
    throw backendFailure(`${catalog.refusedCredentials.length} of ${config.backendUrls.length} backends refused the gateway's credentials: BACKEND_SECRET must equal the backends' LENS_BACKEND_SECRET.`);
  }
  return { catalog, backends: backends ?? [] };
}
