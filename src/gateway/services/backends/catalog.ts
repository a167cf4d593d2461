/**
 * Which models the backends serve, asked of the backends themselves and kept per isolate for a
 * few seconds: chat requests read it from memory, and a stale copy is refreshed in the background.
 *
 * The cache holds results only, never a promise: a fetch belongs to the request that made it, and
 * when that request ends (or its client hangs up) the runtime may cancel the fetch, so a promise
 * shared with other requests could never settle and would hold every one of them. A request with
 * no usable copy fetches one itself, within its own deadline; a background refresh runs under the
 * `waitUntil` of the request that started it, and is known to others by its start time only, so
 * one that was lost is simply started again once its timeout has passed.
 */
import { type BackendModel, MODELS_PATH, ModelsResponse } from "../../../protocol/backend.js";
import type { GatewayConfig } from "../../env.js";
import { backendFailure, backendTimeout } from "../../errors.js";
import type { Deadline } from "../../deadline.js";
import type { RequestScope } from "../../request-scope.js";
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
  /** When the background refresh in progress started; none when none is. */
  refreshingSince?: number;
  /** When a request last fetched the catalog because it named a model the catalog lacked. */
  forcedAt?: number;
}
const entries = new Map<string, Entry>();

async function fetchModels(
  url: string,
  timeoutMs: number,
  headers: Readonly<Record<string, string>>,
): Promise<BackendModel[] | "unauthorized" | null> {
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
  } catch (err) {
    // A refused connection marks the backend down; a slow answer does not (the wait may have been short).
    if (!(err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError"))) markDown(url);
    return null;
  }
}

async function build(config: GatewayConfig, timeout: number): Promise<Catalog> {
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

/**
 * Keeps `catalog` unless a newer one arrived meanwhile (fetches may finish out of order), and
 * returns the one kept. An empty answer (no backend answered in time) never replaces a listing:
 * routing to the listed backends still finds out which of them are up.
 */
function store(entry: Entry, catalog: Catalog): Catalog {
  const current = entry.catalog;
  if (current && (current.fetchedAt > catalog.fetchedAt || (catalog.models.length === 0 && current.models.length > 0)))
    return current;
  entry.catalog = catalog;
  return catalog;
}

/** Fetches the catalog for this request, within its deadline. */
async function fetchNow(config: GatewayConfig, entry: Entry, deadline: Deadline): Promise<Catalog> {
  const timeout = Math.min(config.backendTimeoutMs, CATALOG_TIMEOUT_MS, deadline.budget());
  // The fetches carry their own timeout; the race only guards against one that ignores it.
  return store(
    entry,
    await deadline.race(build(config, timeout), () =>
      backendTimeout("The backends did not list their models in time."),
    ),
  );
}

/** Starts a refresh under this request's waitUntil, unless one started less than its timeout ago. */
function refreshInBackground(config: GatewayConfig, entry: Entry, scope: RequestScope, now: number): void {
  if (entry.refreshingSince !== undefined && now - entry.refreshingSince < CATALOG_TIMEOUT_MS) return;
  const started = now;
  entry.refreshingSince = started;
  const timeout = Math.min(config.backendTimeoutMs, CATALOG_TIMEOUT_MS);
  scope.waitUntil(
    build(config, timeout)
      .then((catalog) => store(entry, catalog))
      .catch(() => {})
      .finally(() => {
        if (entry.refreshingSince === started) entry.refreshingSince = undefined;
      }),
  );
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

/** The current catalog: from memory while fresh, refreshed in the background while stale, else fetched now. */
export async function getCatalog(config: GatewayConfig, scope: RequestScope, now = Date.now()): Promise<Catalog> {
  const entry = entryFor(config);
  const catalog = entry.catalog;
  if (catalog) {
    const age = now - catalog.fetchedAt;
    const empty = catalog.models.length === 0;
    if (age < (empty ? EMPTY_RETRY_MS : FRESH_MS)) return catalog;
    if (!empty && age < STALE_MS) {
      refreshInBackground(config, entry, scope, now);
      return catalog;
    }
  }
  return fetchNow(config, entry, scope.deadline);
}

/** Backends serving `model`; fetches once more if the model is unknown to a catalog that is not brand new. */
export async function backendsFor(
  config: GatewayConfig,
  model: string,
  scope: RequestScope,
): Promise<{ catalog: Catalog; backends: string[] }> {
  let catalog = await getCatalog(config, scope);
  let backends = catalog.backendsByModel.get(model);
  const entry = entryFor(config);
  const now = Date.now();
  const forcedLately = entry.forcedAt !== undefined && now - entry.forcedAt < FORCED_REFRESH_MS;
  if (!backends && now - catalog.fetchedAt > FORCED_REFRESH_MS && !forcedLately) {
    entry.forcedAt = now;
    catalog = await fetchNow(config, entry, scope.deadline);
    backends = catalog.backendsByModel.get(model);
  }
  if (!backends && catalog.refusedCredentials.length > 0) {
    // Saying "no such model" here would send the operator looking in the wrong place.
    throw backendFailure(
      `${catalog.refusedCredentials.length} of ${config.backendUrls.length} backends refused the gateway's credentials: BACKEND_SECRET must equal the backends' LENS_BACKEND_SECRET.`,
    );
  }
  return { catalog, backends: backends ?? [] };
}
