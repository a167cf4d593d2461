import type { Context } from "hono";
import { z } from "zod";
import type { GatewayEnv } from "../env.js";
import { notFound } from "../errors.js";
import { parseJsonBody, validate } from "../openai/parse-request.js";
import { createKey, listKeys, revokeKey } from "../services/api-keys.js";

const CreateKey = z.strictObject({
  scope: z.enum(["client", "admin"]),
  name: z.string().max(200).default(""),
});

/** Creates a key; the only time its plain text is ever shown. */
export async function createApiKey(c: Context<GatewayEnv>): Promise<Response> {
  const input = validate(CreateKey, parseJsonBody(await c.req.text()));
  const { key, record } = await createKey(c.env.DB, input.scope, input.name);
  return c.json({ ...record, key }, 201);
}

export async function listApiKeys(c: Context<GatewayEnv>): Promise<Response> {
  return c.json({ object: "list", data: await listKeys(c.env.DB) });
}

export async function revokeApiKey(c: Context<GatewayEnv>): Promise<Response> {
  const id = c.req.param("id") ?? "";
  if (!(await revokeKey(c.env.DB, id))) throw notFound(`No active key with id '${id}'.`, "key_not_found");
  return c.json({ id, revoked: true });
}
