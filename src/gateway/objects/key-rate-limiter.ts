/**
 * One Durable Object per API key holds that key's request and token windows, so that every
 * isolate and every colo sees the same counts (a per-isolate counter would multiply the limit
 * by the number of isolates). Counts live in memory: an evicted object forgets the last minute,
 * which errs towards letting traffic through, never towards refusing it.
 */
import { DurableObject } from "cloudflare:workers";
import { type Admission, type KeyLimits, KeyWindows } from "../services/rate-limit/key-windows.js";

export type { Admission, KeyLimits };

export class KeyRateLimiter extends DurableObject {
  private readonly windows = new KeyWindows();

  admit(limits: KeyLimits): Admission {
    return this.windows.admit(limits, Date.now());
  }

  spend(tokens: number): void {
    this.windows.spend(tokens, Date.now());
  }
}
