/**
 * HTTP routes over the delta store; the backend server mounts them at DELTAS_PATH
 * (`/internal/v1/deltas`). Only the gateway calls them: it uploads a delta when the backend answers
 * `delta_not_loaded`, and admins list and remove deltas through it.
 *
 *   PUT    /:id   multipart/form-data: `manifest` (JSON text), `tensors` (safetensors file)
 *                 201 with the manifest; 4xx with { error: { code, message } }
 *   GET    /      { deltas: [...], decoded_bytes, max_decoded_bytes }
 *   GET    /:id   the manifest, or 404
 *   DELETE /:id   204, or 404
 */
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { DeltaId, parseDeltaManifest, type DeltaApiErrorCode, type DeltaErrorBody } from "../../protocol/delta.js";
import type { DeltaStore } from "./store.js";

/** Room for the manifest field and multipart framing on top of the file cap. */
const MULTIPART_OVERHEAD_BYTES = 1 << 20;

function statusFor(code: DeltaApiErrorCode): ContentfulStatusCode {
  switch (code) {
    case "too_large":
      return 413;
    case "fingerprint_mismatch":
      return 409;
    case "not_found":
      return 404;
    default:
      return 400;
  }
}

function fail(c: Context, code: DeltaApiErrorCode, message: string): Response {
  const body: DeltaErrorBody = { error: { code, message } };
  return c.json(body, statusFor(code));
}

export function deltaRoutes(store: DeltaStore): Hono {
  const app = new Hono();
  const maxBody = store.options.maxBytes + MULTIPART_OVERHEAD_BYTES;

  app.put(
    "/:id",
    // Refuse an oversized body while reading it, before multipart parsing buffers it all.
    bodyLimit({
      maxSize: maxBody,
      onError: (c) => fail(c, "too_large", `request body is over ${maxBody} bytes`),
    }),
    async (c) => {
      const id = c.req.param("id");
      if (!DeltaId.safeParse(id).success) return fail(c, "bad_request", `invalid delta id "${id}"`);
      const type = c.req.header("content-type") ?? "";
      if (!type.toLowerCase().startsWith("multipart/form-data")) {
        return fail(c, "bad_request", "expected multipart/form-data with fields manifest and tensors");
      }
      let form: FormData;
      try {
        form = await c.req.formData();
      } catch {
        return fail(c, "bad_request", "body is not valid multipart/form-data");
      }
      const manifestField = form.get("manifest");
      const tensorsField = form.get("tensors");
      if (typeof manifestField !== "string") {
        return fail(c, "bad_request", "field manifest (JSON text) is missing");
      }
      if (tensorsField === null || typeof tensorsField === "string") {
        return fail(c, "bad_request", "field tensors (safetensors file) is missing or not a file");
      }
      let manifestJson: unknown;
      try {
        manifestJson = JSON.parse(manifestField);
      } catch {
        return fail(c, "manifest_invalid", "manifest is not valid JSON");
      }
      const parsed = parseDeltaManifest(manifestJson);
      if (!parsed.ok) return fail(c, parsed.error.code, parsed.error.message);
      if (parsed.manifest.id !== id) {
        return fail(c, "id_mismatch", `path id "${id}" differs from manifest.id "${parsed.manifest.id}"`);
      }
      const bytes = new Uint8Array(await tensorsField.arrayBuffer());
      const result = store.put(bytes, parsed.manifest);
      if (!result.ok) return fail(c, result.error.code, result.error.message);
      return c.json(result.manifest, 201);
    },
  );

  app.get("/", (c) =>
    c.json({
      deltas: store.list(),
      decoded_bytes: store.decodedBytes,
      max_decoded_bytes: store.options.maxDecodedBytes,
    }),
  );

  app.get("/:id", (c) => {
    const m = store.manifest(c.req.param("id"));
    return m === undefined ? fail(c, "not_found", `no delta "${c.req.param("id")}"`) : c.json(m);
  });

  app.delete("/:id", (c) => {
    const id = c.req.param("id");
    return store.delete(id) ? c.body(null, 204) : fail(c, "not_found", `no delta "${id}"`);
  });

  return app;
}
