/**
 * Per-key rate limits on chat requests: requests and tokens per minute, counted by the key's
 * Durable Object (objects/key-rate-limiter.ts). A refused request gets 429 with `retry-after` and OpenAI's
 * x-ratelimit-* headers; an admitted one gets the headers and spends its tokens when it finishes.
 */
import { type Deadline, storageTimeout } from "../../deadline.js";
import type { GatewayBindings, GatewayConfig, StoredKeyLimits } from "../../env.js";
import { GatewayError } from "../../errors.js";
import type { Admission, KeyLimits } from "./key-windows.js";

/** The key's own limits; NULL columns take the deployment's defaults; 0 means no limit. */
export function effectiveLimits(stored: StoredKeyLimits, config: GatewayConfig): KeyLimits {
  const pick = (own: number | null, fallback: number | null) => {
    const value = own ?? fallback;
    return value === null || value === 0 ? null : value;
  };
  return {
    requestsPerMinute: pick(stored.requestsPerMinute, config.defaultRequestsPerMinute),
    tokensPerMinute: pick(stored.tokensPerMinute, config.defaultTokensPerMinute),
  };
}

export interface RateLimitGrant {
  headers: Record<string, string>;
  /** Counts a finished request's tokens against the key's minute. */
  spend(tokens: number): Promise<void>;
}

const UNLIMITED: RateLimitGrant = { headers: {}, spend: async () => {} };

function limitHeaders(limits: KeyLimits, admission: Admission): Record<string, string> {
  const headers: Record<string, string> = {};
  if (limits.requestsPerMinute !== null) {
    headers["x-ratelimit-limit-requests"] = String(limits.requestsPerMinute);
    headers["x-ratelimit-remaining-requests"] = String(Math.max(0, admission.remainingRequests ?? 0));
  }
  if (limits.tokensPerMinute !== null) {
    headers["x-ratelimit-limit-tokens"] = String(limits.tokensPerMinute);
    headers["x-ratelimit-remaining-tokens"] = String(Math.max(0, admission.remainingTokens ?? 0));
  }
  return headers;
}

/** Admits one chat request for `keyId`, or throws the 429. Keys without limits cost nothing here. */
export async function admitChat(
  env: GatewayBindings,
  keyId: string,
  limits: KeyLimits,
  deadline: Deadline,
): Promise<RateLimitGrant> {
  if (limits.requestsPerMinute === null && limits.tokensPerMinute === null) return UNLIMITED;
  const namespace = env.RATE_LIMITER;
  if (!namespace) {
    // A configured limit that silently did nothing would be worse than a loud failure.
    throw new GatewayError(
      500,
      "server_error",
      "Rate limits are configured but the RATE_LIMITER Durable Object binding is missing.",
      "rate_limiter_missing",
    );
  }
  const limiter = namespace.get(namespace.idFromName(keyId));
  const late = () => storageTimeout("rate limiter (Durable Object)");
  let admission: Admission;
  try {
    admission = await deadline.optional<Admission>(limiter.admit(limits), late);
  } catch (err) {
    // The limiter being unreachable must not take chat down with it: let the request through.
    console.error("rate limiter unavailable; admitting without a limit", err);
    return UNLIMITED;
  }
  const headers = limitHeaders(limits, admission);
  if (!admission.ok) {
    const per =
      admission.limit === "requests" ? `${limits.requestsPerMinute} requests` : `${limits.tokensPerMinute} tokens`;
    throw new GatewayError(
      429,
      "rate_limit_error",
      `Rate limit reached: this key may use ${per} per minute. Try again in ${admission.retryAfterS} s.`,
      "rate_limit_exceeded",
      null,
      { ...headers, "retry-after": String(admission.retryAfterS) },
    );
  }
  return {
    headers,
    spend: async (tokens: number) => {
      if (limits.tokensPerMinute === null || !(tokens > 0)) return;
      try {
        await deadline.race(limiter.spend(tokens), late);
      } catch (err) {
        console.error("rate limiter unavailable; tokens not counted", err);
      }
    },
  };
}
