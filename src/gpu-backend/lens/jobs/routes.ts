/**
 * HTTP routes over the Lens job runner (runner.ts); the backend app mounts them at LENS_PATH
 * (`/internal/v1/lens`). Only the gateway (and operators through it) calls them.
 *
 *   POST   /jobs                 JSON body: LensJobRequest (src/protocol/lens-jobs.ts), by `kind`:
 *                                 probe | train | subspace | eval          -> 202 { id, state }
 *   GET    /jobs                 { jobs: [record, ...] } newest first
 *   GET    /jobs/:id             the record: state, progress, error, artifact, result
 *   DELETE /jobs/:id             cancel a queued or running job           -> 202 the record
 *   GET    /jobs/:id/artifact    the artifact's tensors file (safetensors), or `?part=manifest` its JSON
 *
 * Errors: { error: { code, message } }, code one of LensJobErrorCode: 400 invalid_request (a bad body,
 * id or parameter), 404 not_found, 409 conflict (already finished; a source job that failed),
 * 501 not_available (eval jobs where no evaluator is set up). Ids are checked against their patterns before
 * anything else happens.
 */
import { readFileSync } from "node:fs";
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ArtifactPart, JobId, type LensJobErrorBody, type LensJobErrorCode } from "../../../protocol/lens-jobs.js";
import type { LensJobRunner } from "./runner.js";
import { LensJobError } from "./work.js";

/** Job requests are small (explicit prompt lists at most). */
const MAX_BODY_BYTES = 8 * 2 ** 20;

function statusFor(code: LensJobErrorCode): ContentfulStatusCode {
  switch (code) {
    case "invalid_request":
      return 400;
    case "not_found":
      return 404;
    case "conflict":
      return 409;
    case "not_available":
      return 501;
    default:
      return 500;
  }
}

function fail(c: Context, code: LensJobErrorCode, message: string): Response {
  const body: LensJobErrorBody = { error: { code, message } };
  return c.json(body, statusFor(code));
}

function failWith(c: Context, err: unknown): Response {
  if (err instanceof LensJobError) return fail(c, err.code, err.message);
  throw err;
}

/** Every :id is a job id, checked before any lookup (so "../x" or "a%2Fb" never goes further). */
const checkJobId: MiddlewareHandler = async (c, next) => {
  if (!JobId.safeParse(c.req.param("id")).success)
    return fail(c, "invalid_request", `invalid job id ${JSON.stringify(c.req.param("id"))}`);
  await next();
};

export function lensRoutes(jobs: LensJobRunner): Hono {
  const app = new Hono();
  app.use("/jobs/:id/*", checkJobId);
  app.use("/jobs/:id", checkJobId);

  app.post(
    "/jobs",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) => fail(c, "invalid_request", `request body is over ${MAX_BODY_BYTES} bytes`),
    }),
    async (c) => {
      let raw: unknown;
      try {
        raw = await c.req.json();
      } catch {
        return fail(c, "invalid_request", "the body is not JSON");
      }
      try {
        const record = jobs.submit(raw);
        return c.json({ id: record.id, state: record.state }, 202);
      } catch (err) {
        return failWith(c, err);
      }
    },
  );

  app.get("/jobs", (c) => c.json({ jobs: jobs.list() }));

  app.get("/jobs/:id", (c) => {
    const record = jobs.get(c.req.param("id"));
    return record ? c.json(record) : fail(c, "not_found", `no job ${c.req.param("id")}`);
  });

  app.delete("/jobs/:id", (c) => {
    try {
      return c.json(jobs.cancel(c.req.param("id")), 202);
    } catch (err) {
      return failWith(c, err);
    }
  });

  app.get("/jobs/:id/artifact", (c) => {
    const partRaw = c.req.query("part");
    const part = ArtifactPart.safeParse(partRaw ?? "tensors");
    if (!part.success) return fail(c, "invalid_request", `part must be "tensors" or "manifest"`);
    try {
      const record = jobs.get(c.req.param("id"));
      // A report has only its JSON: asked for without a part, that is what it returns.
      const which = partRaw === undefined && record?.artifact?.tensors === null ? "manifest" : part.data;
      const { path, name, artifact } = jobs.artifactPath(c.req.param("id"), which);
      const bytes = new Uint8Array(readFileSync(path));
      return c.body(bytes, 200, {
        "content-type": which === "manifest" ? "application/json" : "application/octet-stream",
        "content-disposition": `attachment; filename="${name}"`,
        "x-lens-artifact-id": artifact.id,
        "x-lens-artifact-kind": artifact.kind,
      });
    } catch (err) {
      return failWith(c, err);
    }
  });

  app.notFound((c) => fail(c, "not_found", `unknown route ${c.req.method} ${c.req.path}`));
  return app;
}
