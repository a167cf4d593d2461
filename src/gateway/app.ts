import { Hono } from "hono";
import type { GatewayEnv } from "./env.js";
import { GatewayError, toGatewayError } from "./errors.js";
import {
  deleteAdapterHandler,
  getAdapterHandler,
  listAdaptersHandler,
  uploadAdapterHandler,
} from "./handlers/admin-adapters.js";
import {
  createExperimentHandler,
  experimentResultsHandler,
  experimentStateHandler,
  getExperimentHandler,
  listExperimentsHandler,
  promoteExperimentHandler,
} from "./handlers/admin-experiments.js";
import { adminPageHandler } from "./handlers/admin-page.js";
import { createApiKey, listApiKeys, revokeApiKey, updateApiKey } from "./handlers/admin-keys.js";
import {
  cancelLensJobHandler,
  getLensJobHandler,
  registerLensJobHandler,
  submitLensJobHandler,
} from "./handlers/admin-lens-jobs.js";
import { listLanguagesHandler, rollbackLanguageHandler, setLanguageHandler } from "./handlers/admin-languages.js";
import { registryHandler } from "./handlers/admin-registry.js";
import { trafficHandler } from "./handlers/admin-traffic.js";
import { chatCompletions } from "./handlers/chat-completions.js";
import { feedbackHandler } from "./handlers/feedback.js";
import { listModels } from "./handlers/models.js";
import { requireKey } from "./middleware/auth.js";
import { deadline } from "./middleware/deadline.js";
import { limitBody, limitUpload } from "./middleware/body-limit.js";
import { requestId } from "./middleware/request-id.js";

export function createApp(): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  app.use(requestId());
  app.use(deadline());

  app.get("/healthz", (c) => c.json({ ok: true }));

  app.use("/v1/*", requireKey("client"));
  app.post("/v1/chat/completions", limitBody(), chatCompletions);
  app.get("/v1/models", listModels);
  app.post("/v1/feedback", limitBody(), feedbackHandler);

  // The page itself is static and holds no data; it calls the admin API below with the key.
  app.get("/admin", adminPageHandler);
  app.use("/admin/*", requireKey("admin"));
  app.post("/admin/keys", limitBody(), createApiKey);
  app.get("/admin/keys", listApiKeys);
  app.patch("/admin/keys/:id", limitBody(), updateApiKey);
  app.delete("/admin/keys/:id", revokeApiKey);
  app.post("/admin/adapters", limitUpload(), uploadAdapterHandler);
  app.get("/admin/adapters", listAdaptersHandler);
  app.get("/admin/adapters/:id", getAdapterHandler);
  app.delete("/admin/adapters/:id", deleteAdapterHandler);
  app.get("/admin/languages", listLanguagesHandler);
  app.put("/admin/languages/:lang", limitBody(), setLanguageHandler);
  app.post("/admin/languages/:lang/rollback", rollbackLanguageHandler);
  app.post("/admin/experiments", limitBody(), createExperimentHandler);
  app.get("/admin/experiments", listExperimentsHandler);
  app.get("/admin/experiments/:id", getExperimentHandler);
  app.get("/admin/experiments/:id/results", experimentResultsHandler);
  app.post("/admin/experiments/:id/pause", experimentStateHandler("pause"));
  app.post("/admin/experiments/:id/resume", experimentStateHandler("resume"));
  app.post("/admin/experiments/:id/stop", experimentStateHandler("stop"));
  app.post("/admin/experiments/:id/promote", limitBody(), promoteExperimentHandler);
  app.get("/admin/traffic", trafficHandler);
  app.get("/admin/registry", registryHandler);
  app.post("/admin/lens/jobs", limitBody(), submitLensJobHandler);
  app.get("/admin/lens/jobs/:id", getLensJobHandler);
  app.delete("/admin/lens/jobs/:id", cancelLensJobHandler);
  app.post("/admin/lens/jobs/:id/register", registerLensJobHandler);

  app.notFound((c) => {
    const err = new GatewayError(
      404,
      "invalid_request_error",
      `Unknown request URL: ${c.req.method} ${new URL(c.req.url).pathname}.`,
      "unknown_url",
    );
    return c.json(err.body(), err.status);
  });
  app.onError((err, c) => {
    const e = toGatewayError(err);
    if (e.status >= 500 && !(err instanceof GatewayError)) console.error("unhandled gateway error", err);
    for (const [name, value] of Object.entries(e.headers)) c.header(name, value);
    return c.json(e.body(), e.status);
  });
  return app;
}
