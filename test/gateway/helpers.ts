/** Drives the gateway inside workerd with per-test bindings, and the official openai client on top. */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import OpenAI from "openai";
import { inject } from "vitest";
import { type LoggedRequest, TEST_BACKEND_SECRET } from "../../dev/echo.js";
import type { GatewayBindings } from "../../src/gateway/env.js";
import { createKey } from "../../src/gateway/services/api-keys.js";
import worker from "../../src/gateway/index.js";

export const backends = inject("backends");
export { TEST_MODEL } from "../../dev/echo.js";

export type Overrides = Partial<Omit<GatewayBindings, "DB" | "ADAPTERS">>;

/** A fetch that hands requests to the gateway with the given variables over the real D1/R2 bindings. */
export function gatewayFetch(overrides: Overrides = {}) {
  const bindings = {
    ...env,
    BACKEND_URLS: backends["echo"],
    BACKEND_SECRET: TEST_BACKEND_SECRET,
    ...overrides,
  } as GatewayBindings;
  return async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    return worker.fetch(request, bindings, createExecutionContext());
  };
}

/** Like gatewayFetch, keeping each request's context: `settle()` waits for their waitUntil work. */
export function trackedGatewayFetch(overrides: Overrides = {}) {
  const bindings = {
    ...env,
    BACKEND_URLS: backends["echo"],
    BACKEND_SECRET: TEST_BACKEND_SECRET,
    ...overrides,
  } as GatewayBindings;
  const contexts: ExecutionContext[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const ctx = createExecutionContext();
    contexts.push(ctx);
    return worker.fetch(new Request(input, init), bindings, ctx);
  };
  const settle = async () => {
    for (const ctx of contexts) await waitOnExecutionContext(ctx);
  };
  return { fetch, settle };
}

/** POST /v1/chat/completions through a tracked fetch. */
export async function postChatTracked(
  key: string,
  body: unknown,
  overrides: Overrides = {},
  headers: Record<string, string> = {},
) {
  const { fetch, settle } = trackedGatewayFetch(overrides);
  const res = await fetch("http://gateway.test/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { res, settle };
}

export async function newKey(scope: "client" | "admin" = "client"): Promise<string> {
  return (await createKey(env.DB, scope, `test-${scope}`)).key;
}

export function openai(key: string, overrides: Overrides = {}): OpenAI {
  return new OpenAI({
    apiKey: key,
    baseURL: "http://gateway.test/v1",
    fetch: gatewayFetch(overrides),
    maxRetries: 0,
  });
}

export async function postChat(
  key: string,
  body: unknown,
  overrides: Overrides = {},
  headers: Record<string, string> = {},
): Promise<Response> {
  return gatewayFetch(overrides)("http://gateway.test/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

export async function backendLog(name: string): Promise<LoggedRequest[]> {
  const res = await fetch(`${backends[name]}/__log`);
  return (await res.json()) as LoggedRequest[];
}

/** Splits an SSE body into its `data:` payloads. */
export function sseData(body: string): string[] {
  return body
    .split("\n\n")
    .filter((e) => e.trim() !== "")
    .map((e) => {
      if (!e.startsWith("data: ")) throw new Error(`not an SSE data event: ${JSON.stringify(e)}`);
      return e.slice("data: ".length);
    });
}

export async function until<T>(probe: () => Promise<T | undefined>, ms = 3000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** How a test presents (or fails to present) a key. */
export type AuthKind = "client" | "admin" | "none" | "unknown" | "malformed" | "tab";

/** The Authorization header for `kind`, given the test's client and admin keys. */
export function authHeaderFor(
  kind: AuthKind | undefined,
  keys: { client: string; admin: string },
): Record<string, string> {
  switch (kind ?? "client") {
    case "client":
      return { authorization: `Bearer ${keys.client}` };
    case "admin":
      return { authorization: `Bearer ${keys.admin}` };
    case "unknown":
      return { authorization: "Bearer lens-not-a-real-key" };
    case "malformed":
      return { authorization: `Basic ${btoa("user:pass")}` };
    case "tab":
      return { authorization: "Bearer\tlens-not\ta-key" };
    case "none":
      return {};
  }
}
