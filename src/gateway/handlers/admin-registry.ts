import type { Context } from "hono";
import type { GatewayEnv } from "../env.js";
import { readRegistry } from "../services/console/registry.js";

/** GET /admin/registry: languages (active, previous, evaluation figures) and adapters (source, where in use). */
export async function registryHandler(c: Context<GatewayEnv>): Promise<Response> {
  return c.json({ object: "registry", ...(await readRegistry(c.env.DB)) });
}
