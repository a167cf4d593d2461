import type { Context } from "hono";
import { type GatewayEnv, gatewayConfig } from "../env.js";
import { parseJsonBody } from "../json-body.js";
import { scopeOf } from "../request-scope.js";
import { cancelLensJob, getLensJob, registerLensJob, submitLensJob } from "../services/lens-jobs.js";

/** POST /admin/lens/jobs: a LensJobRequest plus an optional `model`. */
export async function submitLensJobHandler(c: Context<GatewayEnv>): Promise<Response> {
  const raw = parseJsonBody(await c.req.text());
  return c.json(await submitLensJob(gatewayConfig(c.env), c.env.DB, raw, c.get("keyId"), scopeOf(c)), 202);
}

export async function getLensJobHandler(c: Context<GatewayEnv>): Promise<Response> {
  return c.json(await getLensJob(gatewayConfig(c.env), c.env.DB, c.req.param("id") ?? "", scopeOf(c)));
}

export async function cancelLensJobHandler(c: Context<GatewayEnv>): Promise<Response> {
  return c.json(await cancelLensJob(gatewayConfig(c.env), c.env.DB, c.req.param("id") ?? "", scopeOf(c)), 202);
}

/** POST /admin/lens/jobs/:id/register: the job's delta becomes a new adapter version. */
export async function registerLensJobHandler(c: Context<GatewayEnv>): Promise<Response> {
  const config = gatewayConfig(c.env);
  const { adapter, created } = await registerLensJob(
    config,
    c.env.DB,
    c.env.ADAPTERS,
    c.req.param("id") ?? "",
    {
      createdBy: c.get("keyId"),
      maxBytes: config.maxAdapterBytes,
    },
    scopeOf(c),
  );
  return c.json(adapter, created ? 201 : 200);
}
