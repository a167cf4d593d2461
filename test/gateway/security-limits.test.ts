/**
 * Request size limits: every request that carries a body over MAX_BODY_BYTES, and every adapter
 * upload over MAX_ADAPTER_BYTES, is refused with an OpenAI-style 413, whether the size is declared
 * (Content-Length), understated (a Content-Length lie) or unknown (a streamed body without one);
 * reading stops soon after the limit, and nothing is stored.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../src/gateway/index.js";
import { gatewayFetch, newKey } from "./helpers.js";

const MAX_BODY = 1024;
const MAX_ADAPTER = 4096;
/** As in src/gateway/handlers/admin-adapters.ts: room for the manifest and multipart framing. */
const MULTIPART_OVERHEAD = 1 << 20;
const limits = { MAX_BODY_BYTES: String(MAX_BODY), MAX_ADAPTER_BYTES: String(MAX_ADAPTER) };

type BodyForm = "declared" | "streamed" | "understated";
const FORMS: BodyForm[] = ["declared", "streamed", "understated"];

interface Sent {
  /** Bytes the gateway pulled from the body stream (streamed and understated forms). */
  pulled: () => number;
}

/**
 * A body of `size` bytes, sent with its true Content-Length ("declared"), as a stream without one
 * ("streamed"), or as a stream that claims 10 bytes ("understated").
 */
function bodyInit(
  form: BodyForm,
  bytes: Uint8Array<ArrayBuffer>,
  headers: Record<string, string>,
  chunk = 16 * 1024,
): { init: RequestInit; sent: Sent } {
  if (form === "declared") {
    return {
      init: { body: bytes, headers: { ...headers, "content-length": String(bytes.byteLength) } },
      sent: { pulled: () => bytes.byteLength },
    };
  }
  let offset = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.byteLength) return controller.close();
      const end = Math.min(bytes.byteLength, offset + chunk);
      controller.enqueue(bytes.slice(offset, end));
      offset = end;
    },
  });
  const extra: Record<string, string> = form === "understated" ? { "content-length": "10" } : {};
  return {
    init: { body: stream, headers: { ...headers, ...extra }, duplex: "half" } as RequestInit,
    sent: { pulled: () => offset },
  };
}

function jsonOfSize(size: number): Uint8Array<ArrayBuffer> {
  // {"pad":"xxxx..."}: valid JSON, so only the size can make it fail.
  const head = '{"pad":"';
  const tail = '"}';
  return new TextEncoder().encode(head + "x".repeat(Math.max(0, size - head.length - tail.length)) + tail);
}

async function expect413(res: Response, code: string, where: string): Promise<void> {
  const text = await res.text();
  expect(res.status, `${where}: ${text}`).toBe(413);
  const body = JSON.parse(text) as { error: Record<string, unknown> };
  expect(Object.keys(body.error).sort(), where).toEqual(["code", "message", "param", "type"]);
  expect(body.error["type"], where).toBe("invalid_request_error");
  expect(body.error["code"], where).toBe(code);
}

async function counts(): Promise<{ adapters: number; objects: number; keys: number; experiments: number }> {
  const one = async (table: string) =>
    (await env.DB.prepare(`SELECT COUNT(*) AS n FROM ${table}`).first<{ n: number }>())!.n;
  const listed = await env.ADAPTERS.list();
  return {
    adapters: await one("adapters"),
    objects: listed.objects.length,
    keys: await one("api_keys"),
    experiments: await one("experiments"),
  };
}

describe("JSON request bodies over MAX_BODY_BYTES", () => {
  for (const form of FORMS) {
    it(`POST /v1/chat/completions: 413 for a ${form} body, reading stops near the limit`, async () => {
      const key = await newKey("client");
      const big = jsonOfSize(64 * 1024);
      const { init, sent } = bodyInit(
        form,
        big,
        { authorization: `Bearer ${key}`, "content-type": "application/json" },
        1024,
      );
      await expect413(
        await gatewayFetch(limits)("http://gateway.test/v1/chat/completions", { method: "POST", ...init }),
        "request_too_large",
        form,
      );
      // Nothing near the whole body was read: at most the limit plus a few chunks in flight.
      if (form !== "declared") expect(sent.pulled(), `${form}: bytes pulled`).toBeLessThanOrEqual(MAX_BODY + 8 * 1024);
    });
  }

  it("a body right at the limit is read (not 413)", async () => {
    const key = await newKey("client");
    for (const form of FORMS) {
      if (form === "understated") continue;
      const { init } = bodyInit(form, jsonOfSize(MAX_BODY), {
        authorization: `Bearer ${key}`,
        "content-type": "application/json",
      });
      const res = await gatewayFetch(limits)("http://gateway.test/v1/chat/completions", { method: "POST", ...init });
      expect(res.status, form).toBe(400); // the schema refuses {"pad": ...}, after reading it all
      void res.body?.cancel();
    }
  });
});

const ROUTE_KEY = (path: string): "client" | "admin" | null =>
  path.startsWith("/v1/") ? "client" : path.startsWith("/admin/") ? "admin" : null;

describe("every route that takes a body (walked from the app)", () => {
  // POST /admin/adapters has its own, larger limit (below).
  const routes = [
    ...new Map(
      worker.routes
        .filter((r) => r.method !== "ALL" && r.method !== "GET" && r.method !== "HEAD")
        .map((r) => [`${r.method} ${r.path}`, r]),
    ).values(),
  ].filter((r) => !(r.method === "POST" && r.path === "/admin/adapters"));

  it("answers 413, or leaves the body unread, for a body over MAX_BODY_BYTES in every form", async () => {
    expect(routes.length).toBeGreaterThan(5);
    const keys = { client: await newKey("client"), admin: await newKey("admin") };
    const before = await counts();
    const recordsBefore = (await env.DB.prepare("SELECT COUNT(*) AS n FROM requests").first<{ n: number }>())!.n;
    let refused = 0;
    for (const route of routes) {
      const scope = ROUTE_KEY(route.path);
      expect(scope, `${route.method} ${route.path}: no key scope known`).not.toBeNull();
      const path = route.path.replace(/:([A-Za-z_][A-Za-z0-9_]*)(\{[^}]*\})?\??/g, (_, name: string) =>
        name === "lang" ? "sw" : "sample-id-0001",
      );
      for (const form of FORMS) {
        const where = `${route.method} ${route.path} (${form})`;
        const { init, sent } = bodyInit(
          form,
          jsonOfSize(64 * 1024),
          { authorization: `Bearer ${keys[scope!]}`, "content-type": "application/json" },
          1024,
        );
        const res = await gatewayFetch(limits)(`http://gateway.test${path}`, { method: route.method, ...init });
        if (res.status === 413) {
          await expect413(res, "request_too_large", where);
          refused++;
        } else {
          void res.body?.cancel();
          expect(res.status, `${where}: a server error`).toBeLessThan(500);
        }
        // Either way, no more than the limit (plus chunks in flight) was read: a route that does
        // not refuse the body must be one that leaves it unread.
        if (form !== "declared")
          expect(
            sent.pulled(),
            `${where}: answered ${res.status} after reading ${sent.pulled()} bytes`,
          ).toBeLessThanOrEqual(MAX_BODY + 8 * 1024);
      }
    }
    // The JSON routes (chat, feedback, keys, languages, experiments, promote, lens jobs) all refused.
    expect(refused).toBeGreaterThanOrEqual(8 * FORMS.length);
    expect(await counts()).toEqual(before);
    // "Requests refused before the handler (413 body too large) leave no row."
    expect((await env.DB.prepare("SELECT COUNT(*) AS n FROM requests").first<{ n: number }>())!.n).toBe(recordsBefore);
  });
});

async function multipart(
  manifest: string,
  tensors: Uint8Array<ArrayBuffer>,
): Promise<{ bytes: Uint8Array<ArrayBuffer>; type: string }> {
  const form = new FormData();
  form.set("manifest", manifest);
  form.set("tensors", new File([tensors], "delta.safetensors", { type: "application/octet-stream" }));
  const res = new Response(form);
  return { bytes: new Uint8Array(await res.arrayBuffer()), type: res.headers.get("content-type")! };
}

describe("POST /admin/adapters over MAX_ADAPTER_BYTES", () => {
  const manifest = JSON.stringify({ id: "too-big", language: "sw" });

  it("413 too_large for a file just over the limit (within the multipart allowance); nothing stored", async () => {
    const admin = await newKey("admin");
    const before = await counts();
    const { bytes, type } = await multipart(manifest, new Uint8Array(MAX_ADAPTER + 1));
    for (const form of ["declared", "streamed"] as const) {
      const { init } = bodyInit(form, bytes, { authorization: `Bearer ${admin}`, "content-type": type });
      await expect413(
        await gatewayFetch(limits)("http://gateway.test/admin/adapters", { method: "POST", ...init }),
        "too_large",
        form,
      );
    }
    expect(await counts()).toEqual(before);
  });

  for (const form of FORMS) {
    it(`413 too_large for a ${form} upload over the whole allowance, read no further than the limit; nothing stored`, async () => {
      const admin = await newKey("admin");
      const before = await counts();
      const { bytes, type } = await multipart(manifest, new Uint8Array(MAX_ADAPTER + MULTIPART_OVERHEAD + 256 * 1024));
      const { init, sent } = bodyInit(
        form,
        bytes,
        { authorization: `Bearer ${admin}`, "content-type": type },
        64 * 1024,
      );
      await expect413(
        await gatewayFetch(limits)("http://gateway.test/admin/adapters", { method: "POST", ...init }),
        "too_large",
        form,
      );
      if (form !== "declared")
        expect(sent.pulled()).toBeLessThanOrEqual(MAX_ADAPTER + MULTIPART_OVERHEAD + 4 * 64 * 1024);
      expect(await counts()).toEqual(before);
    });
  }

  it("refuses before reading when Content-Length alone is over the limit", async () => {
    const admin = await newKey("admin");
    let pulled = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += 1024;
        controller.enqueue(new Uint8Array(1024));
        if (pulled >= 64 * 1024) controller.close();
      },
    });
    const res = await gatewayFetch(limits)("http://gateway.test/admin/adapters", {
      method: "POST",
      headers: {
        authorization: `Bearer ${admin}`,
        "content-type": "multipart/form-data; boundary=x",
        "content-length": String(MAX_ADAPTER + MULTIPART_OVERHEAD + 1),
      },
      body: stream,
      duplex: "half",
    } as RequestInit);
    await expect413(res, "too_large", "declared over the limit");
    expect(pulled).toBeLessThanOrEqual(8 * 1024);
  });
});
