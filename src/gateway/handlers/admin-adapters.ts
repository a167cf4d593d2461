import type { Context } from "hono";
import { type GatewayBindings, type GatewayEnv, gatewayConfig } from "../env.js";
import { GatewayError, notFound } from "../errors.js";
import { scopeOf } from "../request-scope.js";
import { badUpload, deleteAdapter, getAdapter, listAdapters, uploadAdapter } from "../services/deltas/adapters.js";

const maxAdapterBytes = (env: GatewayBindings) => gatewayConfig(env).maxAdapterBytes;

/** POST /admin/adapters: multipart/form-data with `manifest` (JSON text) and `tensors` (safetensors file). */
export async function uploadAdapterHandler(c: Context<GatewayEnv>): Promise<Response> {
  const type = c.req.header("content-type") ?? "";
  if (!type.toLowerCase().startsWith("multipart/form-data")) {
    throw badUpload("expected multipart/form-data with fields manifest (JSON text) and tensors (safetensors file)");
  }
  let form: FormData;
  try {
    form = await c.req.formData();
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    throw badUpload("the body is not valid multipart/form-data");
  }
  const manifestField = form.get("manifest");
  const tensorsField = form.get("tensors");
  if (typeof manifestField !== "string") throw badUpload("field manifest (JSON text) is missing");
  if (tensorsField === null || typeof tensorsField === "string")
    throw badUpload("field tensors (safetensors file) is missing or not a file");
  let manifest: unknown;
  try {
    manifest = JSON.parse(manifestField);
  } catch {
    throw new GatewayError(
      400,
      "invalid_request_error",
      "The delta was refused (manifest_invalid): manifest is not valid JSON.",
      "manifest_invalid",
      "manifest",
    );
  }
  const bytes = new Uint8Array(await tensorsField.arrayBuffer());
  const { adapter, created } = await uploadAdapter(
    gatewayConfig(c.env),
    c.env.DB,
    c.env.ADAPTERS,
    {
      bytes,
      manifest,
      createdBy: c.get("keyId"),
      maxBytes: maxAdapterBytes(c.env),
    },
    scopeOf(c),
  );
  return c.json(adapter, created ? 201 : 200);
}

export async function listAdaptersHandler(c: Context<GatewayEnv>): Promise<Response> {
  return c.json({ object: "list", data: await listAdapters(c.env.DB) });
}

export async function getAdapterHandler(c: Context<GatewayEnv>): Promise<Response> {
  const id = c.req.param("id") ?? "";
  const adapter = await getAdapter(c.env.DB, id);
  if (!adapter) throw notFound(`No adapter with id '${id}'.`, "adapter_not_found");
  return c.json(adapter);
}

export async function deleteAdapterHandler(c: Context<GatewayEnv>): Promise<Response> {
  const adapter = await deleteAdapter(c.env.DB, c.env.ADAPTERS, c.req.param("id") ?? "");
  return c.json({ id: adapter.id, object: "adapter", deleted: true });
}
