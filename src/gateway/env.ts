/** Bindings the gateway gets from wrangler.toml (vars, D1, R2) and the config derived from them. */
import { backendAuthorization } from "../protocol/backend.js";
import type { Deadline } from "./deadline.js";
import type { KeyRateLimiter } from "./objects/key-rate-limiter.js";

export interface GatewayBindings {
  DB: D1Database;
  ADAPTERS: R2Bucket;
  BACKEND_URLS?: string;
  BACKEND_TIMEOUT_MS?: string;
  BACKEND_IDLE_TIMEOUT_MS?: string;
  MAX_BODY_BYTES?: string;
  MAX_ADAPTER_BYTES?: string;
  /** The backends' shared secret (a Workers secret in production: `wrangler secret put BACKEND_SECRET`). */
  BACKEND_SECRET?: string;
  /** Default per-key limits for client keys without their own (unset or 0: none). */
  RATE_LIMIT_RPM?: string;
  RATE_LIMIT_TPM?: string;
  /** One Durable Object per key counts its requests and tokens (wrangler.toml). */
  RATE_LIMITER?: DurableObjectNamespace<KeyRateLimiter>;
}

export interface GatewayConfig {
  backendUrls: string[];
  /** Longest wait for a backend's response headers. */
  backendTimeoutMs: number;
  /** Longest silence between two frames once a backend is streaming. */
  backendIdleTimeoutMs: number;
  maxBodyBytes: number;
  /** Largest adapter (safetensors) file an upload may carry. */
  maxAdapterBytes: number;
  /** Headers every call to a backend carries: the shared secret, when one is configured. */
  backendHeaders: Readonly<Record<string, string>>;
  /** Default chat limits per client key; null: none. */
  defaultRequestsPerMinute: number | null;
  defaultTokensPerMinute: number | null;
}

/** A key's own chat limits as stored; null: the deployment default; 0: none. */
export interface StoredKeyLimits {
  requestsPerMinute: number | null;
  tokensPerMinute: number | null;
}

interface GatewayVariables {
  requestId: string;
  keyId: string;
  /** The key's own rate limits as stored (NULL: the deployment default). */
  keyLimits: StoredKeyLimits;
  /** The request's deadline (middleware/deadline.ts); `c.env`'s D1 and R2 race it. */
  deadline: Deadline;
  /** The bindings without the request's deadline, for work bounded on its own (request records). */
  bindings: GatewayBindings;
}

export type GatewayEnv = { Bindings: GatewayBindings; Variables: GatewayVariables };

function optionalLimit(value: string | undefined, name: string): number | null {
  if (value === undefined || value.trim() === "") return null;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a whole number >= 0, got '${value}'`);
  return n === 0 ? null : n;
}

function positiveInt(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value.trim() === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got '${value}'`);
  return n;
}

function parseBackendUrls(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((s) => s.trim().replace(/\/+$/, ""))
    .filter((s) => s.length > 0);
}

// Parsing runs once per distinct bindings object, not per request.
const configCache = new WeakMap<GatewayBindings, GatewayConfig>();

export function gatewayConfig(env: GatewayBindings): GatewayConfig {
  let config = configCache.get(env);
  if (!config) {
    config = {
      backendUrls: parseBackendUrls(env.BACKEND_URLS),
      backendTimeoutMs: positiveInt(env.BACKEND_TIMEOUT_MS, 30_000, "BACKEND_TIMEOUT_MS"),
      backendIdleTimeoutMs: positiveInt(env.BACKEND_IDLE_TIMEOUT_MS, 30_000, "BACKEND_IDLE_TIMEOUT_MS"),
      maxBodyBytes: positiveInt(env.MAX_BODY_BYTES, 1_048_576, "MAX_BODY_BYTES"),
      maxAdapterBytes: positiveInt(env.MAX_ADAPTER_BYTES, 64 * 1024 * 1024, "MAX_ADAPTER_BYTES"),
      backendHeaders: env.BACKEND_SECRET ? { authorization: backendAuthorization(env.BACKEND_SECRET) } : {},
      defaultRequestsPerMinute: optionalLimit(env.RATE_LIMIT_RPM, "RATE_LIMIT_RPM"),
      defaultTokensPerMinute: optionalLimit(env.RATE_LIMIT_TPM, "RATE_LIMIT_TPM"),
    };
    configCache.set(env, config);
  }
  return config;
}

/** `env` with some bindings replaced; the same parsed configuration, not parsed again. */
export function replaceBindings(env: GatewayBindings, replacements: Partial<GatewayBindings>): GatewayBindings {
  const replaced = { ...env, ...replacements };
  configCache.set(replaced, gatewayConfig(env));
  return replaced;
}
