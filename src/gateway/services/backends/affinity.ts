/**
 * Language affinity by rendezvous hashing: every language gets a stable preference order over the
 * backends, so a language's requests land on the same backend (whose deltas for it stay loaded),
 * and removing one backend moves only the languages that preferred it.
 */
import { isDown } from "./health.js";

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // A final avalanche step: FNV alone leaves similar keys with similar high bits.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
}

/** Backends in the order a request for `affinityKey` should try them: live ones first. */
export function preferenceOrder(
  backends: readonly string[],
  affinityKey: string,
  down: (url: string) => boolean = (url) => isDown(url),
): string[] {
  return backends
    .map((url) => ({ url, score: fnv1a(`${affinityKey}\n${url}`), down: down(url) }))
    .sort((a, b) => Number(a.down) - Number(b.down) || b.score - a.score)
    .map((b) => b.url);
}
