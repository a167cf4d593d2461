/**
 * Which models the backends serve, asked of the backends themselves and kept per isolate for a
 * few seconds: chat requests read it from memory, and a stale copy is refreshed in the background.
 */
import { type BackendModel, MODELS_PATH, ModelsResponse } from "../../../protocol/backend.js";
import type { GatewayConfig } from "../../env.js";
import { markDown, markUp } from "./health.js";

export interface Catalog {
  fetchedAt: number;
  models: BackendModel[];
  /** Backends serving each model id, in configuration order. */
  backendsByModel: Map<string, string[]>;
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

async function fetchModels(url: string, timeoutMs: number): Promise<BackendModel[] | null> {
  try {
    const res = await fetch(url + MODELS_PATH, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return null;
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
  const answers = await Promise.all(config.backendUrls.map((url) => fetchModels(url, timeout)));
  const models = new Map<string, BackendModel>();
  const backendsByModel = new Map<string, string[]>();
  answers.forEach((list, i) => {
    const url = config.backendUrls[i] as string;
    for (const model of list ?? []) {
      if (!models.has(model.id)) models.set(model.id, model);
      const urls = backendsByModel.get(model.id) ?? [];
      urls.push(url);
      backendsByModel.set(model.id, urls);
    }
  });
  return { fetchedAt: Date.now(), models: [...models.values()], backendsByModel };
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
  const key = config.backendUrls.join(",");
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
  return { catalog, backends: backends ?? [] };
}
