/**
 * Every wait on a request's path is bounded by its deadline (BACKEND_TIMEOUT_MS): D1, R2 and the
 * rate limiter's Durable Object are replaced here by bindings that never answer some calls, and
 * each request still answers, with a 503 and `retry-after` where it cannot go on without the
 * answer, or the base model where it can, and writes its record.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { GatewayBindings } from "../../src/gateway/env.js";
import { createKey } from "../../src/gateway/services/api-keys.js";
import type { RequestRecordRow } from "../../src/gateway/services/request-records.js";
import worker from "../../src/gateway/index.js";
import { TEST_BACKEND_SECRET } from "../../dev/echo.js";
import { makeDelta } from "../../dev/make-delta.js";
import { TEST_MODEL, backends, gatewayFetch } from "./helpers.js";

const never = () => new Promise<never>(() => {});

/** D1 whose statements matching `hang` never settle; every other statement runs as usual. */
function d1Hanging(hang: RegExp): D1Database {
  return new Proxy(env.DB, {
    get(target, prop) {
      if (prop === "prepare") {
        return (sql: string) => {
          const statement = target.prepare(sql);
          if (!hang.test(sql)) return statement;
          const stuck = { bind: () => stuck, first: never, all: never, run: never, raw: never };
          return stuck;
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** R2 whose reads never settle. */
function r2Hanging(): R2Bucket {
  return new Proxy(env.ADAPTERS, {
    get(target, prop) {
      if (prop === "get" || prop === "head") return never;
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** A rate limiter whose objects never answer. */
const limiterHanging = {
  idFromName: (name: string) => name,
  get: () => ({ admit: never, spend: never }),
} as unknown as NonNullable<GatewayBindings["RATE_LIMITER"]>;

const TIMEOUT = "400";

async function send(
  bindings: Partial<GatewayBindings>,
  key: string,
  headers: Record<string, string> = {},
  path = "/v1/chat/completions",
) {
  const all = {
    ...env,
    BACKEND_URLS: backends["echo"],
    BACKEND_SECRET: TEST_BACKEND_SECRET,
    BACKEND_TIMEOUT_MS: TIMEOUT,
    ...bindings,
  } as GatewayBindings;
  const ctx = createExecutionContext();
  const init: RequestInit =
    path === "/v1/chat/completions"
      ? {
          method: "POST",
          body: JSON.stringify({ model: TEST_MODEL, messages: [{ role: "user", content: "Habari ya leo" }] }),
        }
      : { method: "GET" };
  const res = await worker.fetch(
    new Request(`http://gateway.test${path}`, {
      ...init,
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    }),
    all,
    ctx,
  );
  const body = await res.text();
  // The request's own after-work (its record) ends too: a hung write would hold this forever.
  await waitOnExecutionContext(ctx);
  return { res, body };
}

async function recordOf(res: Response): Promise<RequestRecordRow[]> {
  const id = res.headers.get("x-request-id")!;
  return (await env.DB.prepare("SELECT * FROM requests WHERE id = ?1").bind(id).all<RequestRecordRow>()).results;
}

let client: string;
beforeAll(async () => {
  client = (await createKey(env.DB, "client", "bounded-waits")).key;
  // One answered request puts the key in this isolate's cache, as on a warm gateway.
  const { res } = await send({}, client);
  expect(res.status).toBe(200);
});

describe("every wait is bounded", () => {
  it("D1 never answering the key lookup: 503 storage_timeout with retry-after", async () => {
    const fresh = (await createKey(env.DB, "client", "bounded-waits-fresh")).key;
    const { res, body } = await send({ DB: d1Hanging(/FROM api_keys/) }, fresh);
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(JSON.parse(body)).toMatchObject({ error: { type: "server_error", code: "storage_timeout" } });
  });

  it("D1 never answering the language's delta and experiment: the base model answers, and the record is written", async () => {
    const { res, body } = await send({ DB: d1Hanging(/FROM language_deltas|FROM experiment_running/) }, client, {
      "x-lens-language": "sw",
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-lens-delta")).toBe("none");
    expect(JSON.parse(body)).toMatchObject({ object: "chat.completion" });
    expect(await recordOf(res)).toMatchObject([{ status: 200, language: "sw", delta_id: null }]);
  });

  it("the rate limiter's object never answering: admitted without a limit, answered, recorded", async () => {
    const { res } = await send(
      { RATE_LIMITER: limiterHanging, RATE_LIMIT_RPM: "100", RATE_LIMIT_TPM: "100000" },
      client,
    );
    expect(res.status).toBe(200);
    expect(await recordOf(res)).toMatchObject([{ status: 200 }]);
  });

  it("D1 never taking the request record: the request answers and its after-work still ends", async () => {
    const { res } = await send({ DB: d1Hanging(/INSERT INTO requests/) }, client);
    expect(res.status).toBe(200);
    expect(await recordOf(res)).toEqual([]);
  });

  it("R2 never answering while a missing delta is sent: the base model answers in time, and says so", async () => {
    const admin = (await createKey(env.DB, "admin", "bounded-waits-admin")).key;
    const d = makeDelta({ hiddenSize: 8, layers: [2, 3], rank: 2, language: "sw", id: "bounded-r2-sw", seed: 3 });
    d.manifest.base_model.id = TEST_MODEL;
    const form = new FormData();
    form.set("manifest", JSON.stringify(d.manifest));
    form.set("tensors", new File([d.bytes], "delta.safetensors"));
    const strict = { BACKEND_URLS: backends["strict"] };
    const admin_ = gatewayFetch(strict);
    const up = await admin_("http://gateway.test/admin/adapters", {
      method: "POST",
      headers: { authorization: `Bearer ${admin}` },
      body: form,
    });
    expect(up.status).toBe(201);
    const adapter = (await up.json()) as { id: string };
    const on = await admin_("http://gateway.test/admin/languages/sw", {
      method: "PUT",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify({ adapter: adapter.id }),
    });
    expect(on.status).toBe(200);
    await on.text();
    const { res, body } = await send({ ...strict, ADAPTERS: r2Hanging() }, client, { "x-lens-language": "sw" });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-lens-delta")).toBe("none");
    expect(JSON.parse(body)).toMatchObject({ object: "chat.completion" });
    expect(await recordOf(res)).toMatchObject([{ status: 200, delta_id: null }]);
  });
});
