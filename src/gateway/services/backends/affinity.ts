/**
 * Language affinity by rendezvous hashing: every language gets a stable preference order over the
 * backends, so a language's requests land on the same backend (whose deltas for it stay loaded),
 * and removing one backend moves only the languages that preferred it.
 */
import { hash32 } from "../hash.js";
import { isDown } from "./health.js";

/** Backends in the order a request for `affinityKey` should try them: live ones first. */
export function preferenceOrder(
  backends: readonly string[],
  affinityKey: string,
  down: (url: string) => boolean = (url) => isDown(url),
): string[] {
  return backends
    .map((url) => ({ url, score: hash32(`${affinityKey}\n${url}`), down: down(url) }))
    .sort((a, b) => Number(a.down) - Number(b.down) || b.score - a.score)
    .map((b) => b.url);
}
