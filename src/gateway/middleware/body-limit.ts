import type { MiddlewareHandler } from "hono";
import { type GatewayConfig, type GatewayEnv, gatewayConfig } from "../env.js";
import { GatewayError } from "../errors.js";

/**
 * Reads the body within `maxSize` bytes, then hands the bytes read to the handler; past the limit,
 * throws `tooLarge()` and stops reading. A declared Content-Length over the limit is refused before
 * anything is read. Unlike hono's bodyLimit, a Content-Length at or under the limit is not trusted:
 * a body that says 10 bytes and sends megabytes (a Content-Length lie, possible for requests that
 * reach the Worker other than through the edge's HTTP parser) is counted like a chunked one.
 */
const readBodyWithin =
  (maxSize: number, tooLarge: () => Error): MiddlewareHandler<GatewayEnv> =>
  async (c, next) => {
    const body = c.req.raw.body;
    if (!body) return next();
    const declared = c.req.header("content-length")?.trim();
    if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > maxSize) throw tooLarge();
    const reader = body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxSize) {
        await reader.cancel().catch(() => {});
        throw tooLarge();
      }
      chunks.push(value);
    }
    const bytes = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, offset);
      offset += chunk.byteLength;
    }
    const headers = new Headers(c.req.raw.headers);
    headers.set("content-length", String(size));
    headers.delete("transfer-encoding");
    c.req.raw = new Request(c.req.raw, { body: bytes, headers });
    await next();
  };

/** A body limit from configuration, refused with an OpenAI-shaped 413 naming it. */
const limitFrom =
  (
    maxSize: (config: GatewayConfig) => number,
    what: string,
    code: string,
    param: string | null = null,
  ): MiddlewareHandler<GatewayEnv> =>
  (c, next) => {
    const max = maxSize(gatewayConfig(c.env));
    const tooLarge = () =>
      new GatewayError(413, "invalid_request_error", `${what} is larger than the limit of ${max} bytes.`, code, param);
    return readBodyWithin(max, tooLarge)(c, next);
  };

/** Room for the manifest field and multipart framing on top of an adapter upload's file cap. */
const MULTIPART_OVERHEAD_BYTES = 1 << 20;

/** The request body limit (MAX_BODY_BYTES). */
export const limitBody = () => limitFrom((config) => config.maxBodyBytes, "The request body", "request_too_large");

/** Refuses an oversized adapter upload while reading it, before multipart parsing buffers it all. */
export const limitUpload = () =>
  limitFrom((config) => config.maxAdapterBytes + MULTIPART_OVERHEAD_BYTES, "The upload", "too_large", "tensors");
