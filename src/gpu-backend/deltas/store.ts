/**
 * The deltas this backend holds, decoded to float32 and keyed by id, bounded by an LRU on total
 * decoded bytes. In memory only: the gateway re-sends a delta the backend lacks (`delta_not_loaded`),
 * so losing the store on restart costs one round trip, not data.
 *
 * Every put is validated in full before anything changes: a rejected file leaves the store exactly
 * as it was, and a bad replacement keeps the old delta under that id.
 *
 * Eviction only drops the store's reference; a generation step that already got a delta keeps
 * using its arrays until it finishes.
 */
import {
  type DecodedDelta,
  type DeltaError,
  type DeltaManifest,
  decodedDeltaBytes,
  parseDeltaManifest,
  type DeltaExpectations,
  validateDelta,
} from "../../protocol/delta.js";

export interface DeltaStoreOptions extends DeltaExpectations {
  /** Bound on the sum of decoded (float32) bytes of the deltas held. */
  maxDecodedBytes: number;
  /** Clock for last-used times; tests pass their own. */
  now?: () => number;
}

export interface StoredDelta {
  delta: DecodedDelta;
  fileBytes: number;
  decodedBytes: number;
  lastUsedAt: number;
}

export interface DeltaListing {
  manifest: DeltaManifest;
  file_bytes: number;
  decoded_bytes: number;
  /** ISO time of the last put or get. */
  last_used_at: string;
}

export type PutResult =
  | { ok: true; manifest: DeltaManifest; replaced: boolean; evicted: string[] }
  | { ok: false; error: DeltaError };

export class DeltaStore {
  /** Map order is recency order: first entry is the least recently used. */
  private readonly entries = new Map<string, StoredDelta>();
  private decodedTotal = 0;
  private readonly now: () => number;

  constructor(readonly options: DeltaStoreOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Validate, decode and hold a delta; on success it is the most recently used. */
  put(bytes: Uint8Array, manifest: unknown): PutResult {
    // Refuse an over-budget delta from its manifest before decoding anything.
    // parseDeltaManifest, not DeltaManifest.safeParse: it refuses a too deeply nested manifest
    // before zod's recursion can overflow the stack.
    const m = parseDeltaManifest(manifest);
    if (m.ok) {
      const size = decodedDeltaBytes(m.manifest);
      if (size > this.options.maxDecodedBytes) {
        return {
          ok: false,
          error: {
            code: "too_large",
            message: `delta decodes to ${size} bytes, over the store's ${this.options.maxDecodedBytes}-byte bound`,
          },
        };
      }
    }
    const result = validateDelta(bytes, manifest, this.options);
    if (!result.ok) return result;

    // Validated: from here on nothing can fail, so the store changes all at once.
    const { delta } = result;
    const id = delta.manifest.id;
    const decodedBytes = decodedDeltaBytes(delta.manifest);
    const old = this.entries.get(id);
    if (old !== undefined) {
      this.entries.delete(id);
      this.decodedTotal -= old.decodedBytes;
    }
    const evicted: string[] = [];
    for (const [otherId, other] of this.entries) {
      if (this.decodedTotal + decodedBytes <= this.options.maxDecodedBytes) break;
      this.entries.delete(otherId);
      this.decodedTotal -= other.decodedBytes;
      evicted.push(otherId);
    }
    this.entries.set(id, { delta, fileBytes: bytes.byteLength, decodedBytes, lastUsedAt: this.now() });
    this.decodedTotal += decodedBytes;
    return { ok: true, manifest: delta.manifest, replaced: old !== undefined, evicted };
  }

  /** The decoded delta, marked as just used; undefined when not held. */
  get(id: string): DecodedDelta | undefined {
    const e = this.entries.get(id);
    if (e === undefined) return undefined;
    this.entries.delete(id);
    e.lastUsedAt = this.now();
    this.entries.set(id, e);
    return e.delta;
  }

  /** The manifest, without counting as a use. */
  manifest(id: string): DeltaManifest | undefined {
    return this.entries.get(id)?.delta.manifest;
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  delete(id: string): boolean {
    const e = this.entries.get(id);
    if (e === undefined) return false;
    this.entries.delete(id);
    this.decodedTotal -= e.decodedBytes;
    return true;
  }

  /** Everything held, sorted by id; does not count as a use. */
  list(): DeltaListing[] {
    return [...this.entries.values()]
      .map((e) => ({
        manifest: e.delta.manifest,
        file_bytes: e.fileBytes,
        decoded_bytes: e.decodedBytes,
        last_used_at: new Date(e.lastUsedAt).toISOString(),
      }))
      .sort((a, b) => (a.manifest.id < b.manifest.id ? -1 : a.manifest.id > b.manifest.id ? 1 : 0));
  }

  /** Ids from least to most recently used: the order eviction follows. */
  lruOrder(): string[] {
    return [...this.entries.keys()];
  }

  get size(): number {
    return this.entries.size;
  }

  get decodedBytes(): number {
    return this.decodedTotal;
  }
}
