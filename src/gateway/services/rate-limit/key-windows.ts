/** A key's two one-minute windows (requests, tokens) and the admission decision on them. */
import { SlidingWindow } from "./window.js";

export interface KeyLimits {
  /** Requests per minute; null: unlimited. */
  requestsPerMinute: number | null;
  /** Prompt + completion tokens per minute; null: unlimited. */
  tokensPerMinute: number | null;
}

export type Admission =
  | { ok: true; remainingRequests: number | null; remainingTokens: number | null }
  | {
      ok: false;
      limit: "requests" | "tokens";
      retryAfterS: number;
      remainingRequests: number | null;
      remainingTokens: number | null;
    };

/** The decision, apart from the object so that it can be tested without one. */
export class KeyWindows {
  private readonly requests = new SlidingWindow();
  private readonly tokens = new SlidingWindow();

  /** Admits one request (and counts it) when both windows are under their limits. */
  admit(limits: KeyLimits, nowMs: number): Admission {
    const { requestsPerMinute: rpm, tokensPerMinute: tpm } = limits;
    const usedRequests = this.requests.used(nowMs);
    const usedTokens = this.tokens.used(nowMs);
    const remainingTokens = tpm === null ? null : Math.max(0, tpm - usedTokens);
    if (rpm !== null && usedRequests >= rpm) {
      return {
        ok: false,
        limit: "requests",
        retryAfterS: this.requests.secondsUntilBelow(rpm, nowMs),
        remainingRequests: 0,
        remainingTokens,
      };
    }
    // A request's tokens are known only when it finishes: admit while the minute's spend is under the limit.
    if (tpm !== null && usedTokens >= tpm) {
      return {
        ok: false,
        limit: "tokens",
        retryAfterS: this.tokens.secondsUntilBelow(tpm, nowMs),
        remainingRequests: rpm === null ? null : rpm - usedRequests,
        remainingTokens: 0,
      };
    }
    this.requests.add(1, nowMs);
    return { ok: true, remainingRequests: rpm === null ? null : rpm - usedRequests - 1, remainingTokens };
  }

  spend(tokens: number, nowMs: number): void {
    this.tokens.add(tokens, nowMs);
  }
}
