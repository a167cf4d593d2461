/**
 * Every route of the gateway, walked with no key, a client key and an admin key. The routes come
 * from the app itself (`app.routes`), so a route added later is walked too, and one that none of
 * the rules below covers fails the walk until it is classified.
 *
 * Rules (README, "Errors"; src/gateway/middleware/auth.ts):
 *   /v1/*     a client key; no key 401, an admin key 403
 *   /admin/*  an admin key; no key 401, a client key 403
 *   public    GET /healthz and GET /admin (the admin page shell, which holds no data)
 * Every 401/403 is `{error: {message, type, param, code}}` and echoes no part of the presented key.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../src/gateway/index.js";
import { hashKey } from "../../src/gateway/services/api-keys.js";
import { gatewayFetch, newKey } from "./helpers.js";

type Scope = "public" | "client" | "admin";
type Who = "none" | "client" | "admin";

/** Routes that answer without a key, by "METHOD path" exactly as registered. */
const PUBLIC_ROUTES = new Set(["GET /healthz", "GET /admin"]);

function classify(method: string, path: string): Scope | null {
  if (PUBLIC_ROUTES.has(`${method} ${path}`)) return "public";
  if (path.startsWith("/v1/")) return "client";
  if (path.startsWith("/admin/")) return "admin";
  return null;
}

/** Values for path parameters by name; anything else gets a generic one. */
const PARAM_SAMPLES: Record<string, string> = {
  id: "sample-id-0001",
  lang: "sw",
};

function samplePath(path: string): string {
  // `:name`, optionally with a `{regex}` constraint and a trailing `?`.
  return path.replace(
    /:([A-Za-z_][A-Za-z0-9_]*)(\{[^}]*\})?\??/g,
    (_, name: string) => PARAM_SAMPLES[name] ?? "sample",
  );
}

interface WalkedRoute {
  method: string;
  path: string;
  scope: Scope | null;
}

/** The endpoints of the app: middleware (`use`, method ALL) is not an endpoint; handler chains count once. */
function appRoutes(): WalkedRoute[] {
  const seen = new Map<string, WalkedRoute>();
  for (const r of worker.routes) {
    if (r.method === "ALL") continue;
    const key = `${r.method} ${r.path}`;
    if (!seen.has(key)) seen.set(key, { method: r.method, path: r.path, scope: classify(r.method, r.path) });
  }
  return [...seen.values()];
}

const hasBody = (method: string) => method !== "GET" && method !== "HEAD";

function call(method: string, path: string, authorization: string | null): Promise<Response> {
  return gatewayFetch()(`http://gateway.test${path}`, {
    method,
    headers: { ...(authorization !== null ? { authorization } : {}), "content-type": "application/json" },
    ...(hasBody(method) ? { body: "{}" } : {}),
  });
}

/** An auth refusal: the status, the OpenAI error shape exactly, the code, and nothing of the key echoed. */
async function expectRefusal(
  res: Response,
  status: 401 | 403,
  code: string,
  presented: string | null,
  where: string,
): Promise<void> {
  const text = await res.text();
  expect(res.status, `${where}: ${text}`).toBe(status);
  expect(res.headers.get("content-type") ?? "", where).toContain("application/json");
  expect(res.headers.get("x-request-id"), where).toBeTruthy();
  const body = JSON.parse(text) as { error: Record<string, unknown> };
  expect(Object.keys(body), where).toEqual(["error"]);
  expect(Object.keys(body.error).sort(), where).toEqual(["code", "message", "param", "type"]);
  expect(typeof body.error["message"], where).toBe("string");
  expect(body.error["type"], where).toBe(status === 401 ? "invalid_request_error" : "permission_error");
  expect(body.error["code"], where).toBe(code);
  expect(body.error["param"], where).toBeNull();
  if (presented !== null) expectNoEcho(text, res.headers, presented, where);
}

/** Neither the whole key nor any 8-character piece of its random part shows up in the body or headers. */
function expectNoEcho(text: string, headers: Headers, key: string, where: string): void {
  let haystack = text;
  headers.forEach((value, name) => {
    haystack += `\n${name}: ${value}`;
  });
  expect(haystack, where).not.toContain(key);
  const secret = key.replace(/^lens-(admin-)?/, "");
  for (let i = 0; i + 8 <= secret.length; i++)
    expect(haystack.includes(secret.slice(i, i + 8)), `${where}: echoes part of the key`).toBe(false);
}

describe("route walk: scope rules on every route of the app", () => {
  const routes = appRoutes();

  it("finds the routes from the app and classifies every one", () => {
    // Sanity: the walk really sees the app (these are the routes the README documents first).
    const names = routes.map((r) => `${r.method} ${r.path}`);
    for (const known of [
      "POST /v1/chat/completions",
      "GET /v1/models",
      "POST /admin/keys",
      "POST /admin/adapters",
      "GET /healthz",
    ]) {
      expect(names).toContain(known);
    }
    const unclassified = routes.filter((r) => r.scope === null).map((r) => `${r.method} ${r.path}`);
    expect(unclassified, "routes no rule covers: add them to PUBLIC_ROUTES or put them under /v1 or /admin").toEqual(
      [],
    );
    // Nothing outside /v1 and /admin is public but the two pages we know.
    expect(
      routes
        .filter((r) => r.scope === "public")
        .map((r) => `${r.method} ${r.path}`)
        .sort(),
    ).toEqual([...PUBLIC_ROUTES].sort());
  });

  it("walks every route with no key, a client key and an admin key", async () => {
    const client = await newKey("client");
    const admin = await newKey("admin");
    const hashes = [await hashKey(client), await hashKey(admin)];
    let walked = 0;
    for (const route of routes) {
      const path = samplePath(route.path);
      const where = `${route.method} ${route.path} (${path})`;
      const as: Record<Who, string | null> = { none: null, client: `Bearer ${client}`, admin: `Bearer ${admin}` };
      const res: Record<Who, Response> = {
        none: await call(route.method, path, as.none),
        client: await call(route.method, path, as.client),
        admin: await call(route.method, path, as.admin),
      };
      walked += 3;
      if (route.scope === "public") {
        for (const who of ["none", "client", "admin"] as const) {
          const text = await res[who].text();
          expect(res[who].status, `${where} as ${who}: ${text}`).toBe(200);
          if (as[who] !== null)
            expectNoEcho(text, res[who].headers, who === "client" ? client : admin, `${where} as ${who}`);
        }
        continue;
      }
      const allowed: Who = route.scope === "client" ? "client" : "admin";
      const other: Who = route.scope === "client" ? "admin" : "client";
      await expectRefusal(res.none, 401, "missing_api_key", null, `${where} with no key`);
      await expectRefusal(
        res[other],
        403,
        "wrong_key_scope",
        other === "client" ? client : admin,
        `${where} with a ${other} key`,
      );
      // The right key gets past auth and reaches the route's own handler (not the URL-not-found answer).
      const text = await res[allowed].text();
      expect([401, 403], `${where} with a ${allowed} key: ${text}`).not.toContain(res[allowed].status);
      if (res[allowed].status === 404) {
        expect(
          (JSON.parse(text) as { error: { code: string } }).error.code,
          `${where}: the sample path did not reach the route; add a sample for its parameter`,
        ).not.toBe("unknown_url");
      }
      expectNoEcho(text, res[allowed].headers, allowed === "client" ? client : admin, `${where} with a ${allowed} key`);
      // Nor does any answer show a key's stored hash.
      for (const hash of hashes) expect(text, `${where}: shows a key hash`).not.toContain(hash);
    }
    expect(walked).toBe(routes.length * 3);
    console.log(`route walk: ${routes.length} routes x 3 keys = ${walked} requests`);
  });

  it("refuses unknown and revoked keys of either scope on every protected route", async () => {
    const admin = await newKey("admin");
    const mk = async (scope: "client" | "admin") => {
      const created = (await (
        await gatewayFetch()("http://gateway.test/admin/keys", {
          method: "POST",
          headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
          body: JSON.stringify({ scope, name: `revoke-${scope}` }),
        })
      ).json()) as { id: string; key: string };
      // Used once so that it sits in the isolate's cache when revoked.
      const probe = await call("GET", scope === "client" ? "/v1/models" : "/admin/keys", `Bearer ${created.key}`);
      expect(probe.status).toBe(200);
      void probe.body?.cancel();
      const del = await gatewayFetch()(`http://gateway.test/admin/keys/${created.id}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${admin}` },
      });
      expect(del.status).toBe(200);
      return created.key;
    };
    const revoked = { client: await mk("client"), admin: await mk("admin") };
    const unknown = `lens-${"A".repeat(32)}`;
    let walked = 0;
    for (const route of routes) {
      if (route.scope === "public" || route.scope === null) continue;
      const path = samplePath(route.path);
      for (const [label, key] of [
        ["revoked client key", revoked.client],
        ["revoked admin key", revoked.admin],
        ["unknown key", unknown],
      ] as const) {
        await expectRefusal(
          await call(route.method, path, `Bearer ${key}`),
          401,
          "invalid_api_key",
          key,
          `${route.method} ${route.path} with a ${label}`,
        );
        walked++;
      }
    }
    expect(walked).toBeGreaterThan(0);
  });
});

describe("unknown URLs", () => {
  it("answer 401 under /v1 and /admin without a key (no route probing), 404 elsewhere", async () => {
    for (const path of ["/v1/nope", "/v1/chat/completions/x", "/admin/nope", "/admin/keys/a/b/c"]) {
      await expectRefusal(await call("GET", path, null), 401, "missing_api_key", null, path);
    }
    const res = await call("GET", "/nope", null);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("unknown_url");
  });
});

describe("path and method variants never get around auth", () => {
  const protectedRoutes = appRoutes().filter((r) => r.scope === "client" || r.scope === "admin");

  function variants(path: string): string[] {
    const [, first = "", rest = ""] = /^\/([^/]+)(.*)$/.exec(path) ?? [];
    return [
      `/${first.toUpperCase()}${rest}`,
      `//${first}${rest}`,
      `/${first}/${rest}`,
      `/${first}/.${rest}`,
      `/${first}%2F${rest.slice(1)}`,
      `/${first}%2f${rest.slice(1)}`,
      `/%${first.charCodeAt(0).toString(16)}${first.slice(1)}${rest}`,
      `/${first}${rest}/`,
      `/${first}${rest};x=1`,
      `/${first}${rest}%20`,
      `/${first}${rest}%00`,
      `/${first}${rest}?authorization=x`,
      `/x/../${first}${rest}`,
      `/${first}/%2e%2e/${first}${rest}`,
    ];
  }

  it("no key: every variant of every protected path answers 401 or an unknown URL, never the route", async () => {
    let n = 0;
    for (const route of protectedRoutes) {
      for (const path of variants(samplePath(route.path))) {
        const res = await call(route.method, path, null);
        const text = await res.text();
        expect([401, 404], `${route.method} ${path}: ${text}`).toContain(res.status);
        if (res.status === 404)
          expect((JSON.parse(text) as { error: { code: string } }).error.code, `${route.method} ${path}`).toBe(
            "unknown_url",
          );
        n++;
      }
    }
    expect(n).toBe(protectedRoutes.length * 14);
  });

  it("the wrong key: variants of admin paths with a client key (and /v1 paths with an admin key) are refused", async () => {
    const client = await newKey("client");
    const admin = await newKey("admin");
    for (const route of protectedRoutes) {
      const wrong = route.scope === "admin" ? client : admin;
      for (const path of variants(samplePath(route.path))) {
        const res = await call(route.method, path, `Bearer ${wrong}`);
        const text = await res.text();
        expect([403, 404], `${route.method} ${path}: ${text}`).toContain(res.status);
      }
    }
  });

  it("methods a route does not have are refused without a key too", async () => {
    for (const route of protectedRoutes) {
      for (const method of ["PATCH", "OPTIONS", "HEAD", "PUT", "DELETE", "POST", "GET"]) {
        if (method === route.method) continue;
        const res = await call(method, samplePath(route.path), null);
        expect(res.status, `${method} ${route.path}`).toBe(401);
        void res.body?.cancel();
      }
    }
  });
});

describe("how the Authorization header is read", () => {
  // The auth scheme is case-insensitive (RFC 9110 11.1) and surrounding whitespace is tolerated;
  // anything else (another scheme, a bare key, extra tokens, other headers) is "no key": 401.
  it("accepts Bearer in any case and with extra spaces or a tab", async () => {
    const client = await newKey("client");
    for (const header of [
      `Bearer ${client}`,
      `bearer ${client}`,
      `BEARER ${client}`,
      `Bearer    ${client}`,
      `Bearer\t${client}`,
      `  Bearer ${client}  `,
    ]) {
      const res = await call("GET", "/v1/models", header);
      expect(res.status, JSON.stringify(header)).toBe(200);
      void res.body?.cancel();
    }
  });

  it("refuses other schemes, bare keys and extra tokens without echoing the key", async () => {
    const client = await newKey("client");
    const admin = await newKey("admin");
    for (const key of [client, admin]) {
      const path = key === client ? "/v1/models" : "/admin/keys";
      const headers = [
        key,
        `Basic ${btoa(`user:${key}`)}`,
        `Basic ${key}`,
        `Token ${key}`,
        `Bearer: ${key}`,
        `Bearer=${key}`,
        `Bearer${key}`,
        `Bearer ${key} extra`,
        `Bearer ${key}, Bearer ${key}`,
        "Bearer",
        "Bearer ",
        "",
      ];
      for (const header of headers) {
        await expectRefusal(
          await call("GET", path, header),
          401,
          "missing_api_key",
          key,
          `${path} with ${JSON.stringify(header)}`,
        );
      }
      // A key sent in another header, or in the URL, is not a key.
      for (const [where, res] of [
        ["x-api-key", await gatewayFetch()(`http://gateway.test${path}`, { headers: { "x-api-key": key } })],
        ["api-key", await gatewayFetch()(`http://gateway.test${path}`, { headers: { "api-key": key } })],
        ["?api_key=", await gatewayFetch()(`http://gateway.test${path}?api_key=${key}&key=${key}`)],
      ] as const) {
        await expectRefusal(res, 401, "missing_api_key", key, `${path} with the key in ${where}`);
      }
    }
  });

  it("treats a key that differs only in case or by a character as unknown", async () => {
    const client = await newKey("client");
    for (const variant of [
      client.toUpperCase(),
      client.toLowerCase(),
      `${client}x`,
      client.slice(0, -1),
      `"${client}"`,
      `${client}\u200b`,
    ]) {
      if (variant === client) continue;
      await expectRefusal(
        await call("GET", "/v1/models", `Bearer ${variant}`),
        401,
        "invalid_api_key",
        variant,
        `variant ${JSON.stringify(variant)}`,
      );
    }
  });
});

describe("rate-limited answers", () => {
  it("a 429 is OpenAI-shaped and echoes no part of the key", async () => {
    const client = await newKey("client");
    const chat = () =>
      gatewayFetch({ RATE_LIMIT_RPM: "1" })("http://gateway.test/v1/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${client}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "lens-test-echo", messages: [{ role: "user", content: "hello there" }] }),
      });
    let limited: Response | null = null;
    for (let i = 0; i < 4 && limited === null; i++) {
      const res = await chat();
      if (res.status === 429) limited = res;
      else void res.body?.cancel();
    }
    expect(limited, "no 429 with RATE_LIMIT_RPM=1").not.toBeNull();
    const text = await limited!.text();
    const body = JSON.parse(text) as { error: Record<string, unknown> };
    expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
    expectNoEcho(text, limited!.headers, client, "429");
  });
});

describe("keys at rest", () => {
  it("keeps no plaintext key in any D1 table, after creating keys through the admin API and using them", async () => {
    const admin = await newKey("admin");
    const created: string[] = [admin];
    for (const scope of ["client", "admin"] as const) {
      const res = await gatewayFetch()("http://gateway.test/admin/keys", {
        method: "POST",
        headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
        body: JSON.stringify({ scope, name: `at-rest-${scope}` }),
      });
      expect(res.status).toBe(201);
      created.push(((await res.json()) as { key: string }).key);
    }
    // Use the new client key on a chat request, which leaves a request record.
    const chat = await gatewayFetch()("http://gateway.test/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${created[1]}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "no-such-model", messages: [{ role: "user", content: "hello" }] }),
    });
    void chat.body?.cancel();

    const tables = await env.DB.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'",
    ).all<{ name: string }>();
    expect(tables.results.map((t) => t.name)).toContain("api_keys");
    const dumps: string[] = [];
    for (const { name } of tables.results) {
      const rows = await env.DB.prepare(`SELECT * FROM "${name.replace(/"/g, '""')}"`).all<Record<string, unknown>>();
      dumps.push(JSON.stringify(rows.results));
    }
    const keyRows = await env.DB.prepare("SELECT * FROM api_keys").all<Record<string, unknown>>();
    for (const key of created) {
      const secret = key.replace(/^lens-(admin-)?/, "");
      for (const dump of dumps) {
        expect(dump).not.toContain(key);
        // The displayed prefix (key_prefix, 12 characters) is the most of a key any row holds.
        for (let i = 0; i + 8 <= secret.length; i++)
          expect(dump.includes(secret.slice(i, i + 8)), "a row holds 8+ characters of a key's random part").toBe(false);
      }
      const mine = keyRows.results.filter(
        (r) => typeof r["key_prefix"] === "string" && key.startsWith(r["key_prefix"] as string),
      );
      expect(mine.length).toBeGreaterThan(0);
      for (const row of mine) {
        for (const [column, value] of Object.entries(row)) {
          if (typeof value !== "string") continue;
          expect(value, `api_keys.${column}`).not.toBe(key);
          expect(value.length <= 12 || !key.includes(value), `api_keys.${column} holds a piece of the key`).toBe(true);
        }
      }
    }
  });
});
