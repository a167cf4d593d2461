import type { Context } from "hono";
import type { ModelList } from "../../protocol/openai.js";
import { type GatewayEnv, gatewayConfig } from "../env.js";
import { noBackend } from "../errors.js";
import { scopeOf } from "../request-scope.js";
import { getCatalog } from "../services/backends/catalog.js";

export async function listModels(c: Context<GatewayEnv>): Promise<Response> {
  const config = gatewayConfig(c.env);
  if (config.backendUrls.length === 0) throw noBackend("No backends are configured (BACKEND_URLS is empty).");
  const catalog = await getCatalog(config, scopeOf(c));
  if (catalog.models.length === 0) throw noBackend();
  const list: ModelList = {
    object: "list",
    data: catalog.models.map((m) => ({ id: m.id, object: "model", created: m.created, owned_by: m.owned_by })),
  };
  return c.json(list);
}
