import type { Context } from "hono";
import { z } from "zod";
import type { GatewayEnv } from "../env.js";
import { notFound } from "../errors.js";
import { parseJsonBody, validate } from "../json-body.js";
import { createKey, listKeys, revokeKey, setKeyLimits } from "../services/api-keys.js";

/** Per minute; null: the deployment default (RATE_LIMIT_RPM / RATE_LIMIT_TPM); 0: no limit. */
const Limit = z.number().int().min(0).max(1_000_000_000).nullable();

const CreateKey = z.strictObject({
  scope: z.enum(["client", "admin"]),
  name: z.string().max(200).default(""),
  requests_per_minute: Limit.default(null),
  tokens_per_minute: Limit.default(null),
});

const UpdateKey = z.strictObject({
  requests_per_minute: Limit.optional(),
  tokens_per_minute: Limit.optional(),
});

/** Creates a key; the only time its plain text is ever shown. */
export async function createApiKey(c: Context<GatewayEnv>): Promise<Response> {
  const input = validate(CreateKey, parseJsonBody(await c.req.text()));
  const { key, record } = await createKey(c.env.DB, input.scope, input.name, {
    requestsPerMinute: input.requests_per_minute,
    tokensPerMinute: input.tokens_per_minute,
  });
  return c.json({ ...record, key }, 201);
}

/** Changes a key's rate limits (PATCH: only the fields sent). */
export async function updateApiKey(c: Context<GatewayEnv>): Promise<Response> {
  const id = c.req.param("id") ?? "";
  const input = validate(UpdateKey, parseJsonBody(await c.req.text()));
  const updated = await setKeyLimits(c.env.DB, id, {
    ...(input.requests_per_minute !== undefined ? { requestsPerMinute: input.requests_per_minute } : {}),
    ...(input.tokens_per_minute !== undefined ? { tokensPerMinute: input.tokens_per_minute } : {}),
  });
  if (!updated) throw notFound(`No active key with id '${id}'.`, "key_not_found");
  return c.json(updated);
}

export async function listApiKeys(c: Context<GatewayEnv>): Promise<Response> {
  return c.json({ object: "list", data: await listKeys(c.env.DB) });
}

export async function revokeApiKey(c: Context<GatewayEnv>): Promise<Response> {
  const id = c.req.param("id") ?? "";
  if (!(await revokeKey(c.env.DB, id))) throw notFound(`No active key with id '${id}'.`, "key_not_found");
  return c.json({ id, revoked: true });
}
