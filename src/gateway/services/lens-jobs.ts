/**
 * Lens jobs (probe, train, subspace, eval) run on a backend; the gateway forwards admin requests to
 * the first backend serving the job's model and remembers in D1 which backend holds each job. A
 * finished train or subspace job's delta can be registered as a new adapter version.
 */
import { z } from "zod";
import { JobId, LENS_PATH, LensJobErrorCode, LensJobRecord, LensJobRequest } from "../../protocol/lens-jobs.js";
import type { Deadline } from "../deadline.js";
import type { GatewayConfig } from "../env.js";
import { GatewayError, backendFailure, backendTimeout, invalidRequest, noBackend, notFound } from "../errors.js";
import { type AdapterRow, getAdapter, uploadAdapter } from "./deltas/adapters.js";
import type { RequestScope } from "../request-scope.js";
import { backendsFor, getCatalog } from "./backends/catalog.js";

interface LensJobRow {
  id: string;
  backend_url: string;
  model: string;
  kind: string;
  created_at: number;
  created_by: string;
  adapter_id: string | null;
}

const COLUMNS = "id, backend_url, model, kind, created_at, created_by, adapter_id";

/** The admin body: a LensJobRequest plus the model whose backend runs it (default: the first served). */
const ModelField = z.looseObject({ model: z.string().min(1).max(200).optional() });

function issueMessage(err: z.ZodError): { message: string; param: string | null } {
  const issue = err.issues[0];
  const path = issue?.path.join(".") ?? "";
  return {
    message: `Invalid Lens job request${path ? ` at '${path}'` : ""}: ${issue?.message ?? "invalid"}.`,
    param: path || null,
  };
}

function parseJobSubmission(raw: unknown): { model: string | undefined; request: LensJobRequest } {
  const head = ModelField.safeParse(raw);
  if (!head.success) {
    const { message, param } = issueMessage(head.error);
    throw invalidRequest(message, param, "invalid_lens_job");
  }
  const { model, ...rest } = head.data;
  const parsed = LensJobRequest.safeParse(rest);
  if (!parsed.success) {
    const { message, param } = issueMessage(parsed.error);
    throw invalidRequest(message, param, "invalid_lens_job");
  }
  return { model, request: parsed.data };
}

const LensJobErrorBody = z.object({ error: z.object({ code: LensJobErrorCode, message: z.string().max(2000) }) });

/** A job id from a URL, checked against the backend's strict pattern before any use. */
function checkJobId(id: string): string {
  if (!JobId.safeParse(id).success)
    throw invalidRequest(
      `Invalid job id '${id.slice(0, 80)}': it must look like job-<time>-<8 hex>.`,
      "id",
      "invalid_job_id",
    );
  return id;
}

/** One call to a backend's Lens API within the request's deadline (its body read included). */
async function backendCall(
  config: GatewayConfig,
  deadline: Deadline,
  url: string,
  init: RequestInit = {},
): Promise<Response> {
  let res: Response;
  try {
    const headers = { ...config.backendHeaders, ...(init.headers as Record<string, string> | undefined) };
    res = await fetch(url, { ...init, headers, signal: AbortSignal.timeout(Math.max(1, deadline.budget())) });
  } catch (err) {
    if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")) throw backendTimeout();
    throw backendFailure("The backend holding this Lens job could not be reached.");
  }
  if (res.ok) return res;
  let message = `the backend answered ${res.status}`;
  try {
    // Only a protocol error body's message is passed on, and only for a refusal (4xx): the text
    // of anything else (a proxy's error page, a crash dump) could carry internals or secrets.
    const body = LensJobErrorBody.safeParse(await res.json());
    if (body.success && res.status < 500) message = body.data.error.message;
  } catch {
    // not JSON: keep the status line
  }
  switch (res.status) {
    case 400:
      throw invalidRequest(`The backend refused the Lens job request: ${message}.`, null, "invalid_lens_job");
    case 404:
      throw notFound(`The backend has no such Lens job: ${message}.`, "lens_job_not_found");
    case 409:
      throw new GatewayError(409, "invalid_request_error", `Lens job conflict: ${message}.`, "lens_job_conflict");
    case 501:
      throw new GatewayError(
        501,
        "invalid_request_error",
        `Not available on the backend: ${message}.`,
        "not_available",
      );
    default:
      throw backendFailure(`The backend failed the Lens job request: ${message}.`);
  }
}

async function jobRow(db: D1Database, id: string): Promise<LensJobRow> {
  const row = await db.prepare(`SELECT ${COLUMNS} FROM lens_jobs WHERE id = ?1`).bind(id).first<LensJobRow>();
  if (!row) throw notFound(`No Lens job with id '${id}' was submitted through this gateway.`, "lens_job_not_found");
  return row;
}

async function fetchRecord(config: GatewayConfig, deadline: Deadline, row: LensJobRow): Promise<LensJobRecord> {
  const res = await backendCall(config, deadline, `${row.backend_url}${LENS_PATH}/jobs/${row.id}`);
  const parsed = LensJobRecord.safeParse(await res.json().catch(() => null));
  if (!parsed.success) throw backendFailure("The backend answered a malformed Lens job record.");
  return parsed.data;
}

export interface GatewayLensJob extends LensJobRecord {
  object: "lens.job";
  model: string;
  adapter_id: string | null;
}

const show = (row: LensJobRow, record: LensJobRecord): GatewayLensJob => ({
  object: "lens.job",
  ...record,
  model: row.model,
  adapter_id: row.adapter_id,
});

/** Submits a job to the first backend serving the model; answers the backend's {id, state}. */
export async function submitLensJob(
  config: GatewayConfig,
  db: D1Database,
  raw: unknown,
  createdBy: string,
  scope: RequestScope,
): Promise<{ object: "lens.job"; id: string; state: string; kind: string; model: string }> {
  const { model: asked, request } = parseJobSubmission(raw);
  const model = asked ?? (await getCatalog(config, scope)).models[0]?.id;
  if (!model) throw noBackend();
  const { backends } = await backendsFor(config, model, scope);
  const backend = backends[0];
  if (!backend) {
    if (asked)
      throw notFound(`The model '${model}' does not exist or no backend serves it.`, "model_not_found", "model");
    throw noBackend();
  }
  const res = await backendCall(config, scope.deadline, `${backend}${LENS_PATH}/jobs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request),
  });
  const answer = z.object({ id: JobId, state: z.string() }).safeParse(await res.json().catch(() => null));
  if (!answer.success) throw backendFailure("The backend answered a malformed job id.");
  await db
    .prepare(`INSERT INTO lens_jobs (${COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)`)
    .bind(answer.data.id, backend, model, request.kind, Math.floor(Date.now() / 1000), createdBy)
    .run();
  return { object: "lens.job", id: answer.data.id, state: answer.data.state, kind: request.kind, model };
}

export async function getLensJob(
  config: GatewayConfig,
  db: D1Database,
  id: string,
  scope: RequestScope,
): Promise<GatewayLensJob> {
  const row = await jobRow(db, checkJobId(id));
  return show(row, await fetchRecord(config, scope.deadline, row));
}

export async function cancelLensJob(
  config: GatewayConfig,
  db: D1Database,
  id: string,
  scope: RequestScope,
): Promise<GatewayLensJob> {
  const row = await jobRow(db, checkJobId(id));
  const res = await backendCall(config, scope.deadline, `${row.backend_url}${LENS_PATH}/jobs/${row.id}`, {
    method: "DELETE",
  });
  const parsed = LensJobRecord.safeParse(await res.json().catch(() => null));
  if (!parsed.success) throw backendFailure("The backend answered a malformed Lens job record.");
  return show(row, parsed.data);
}

export interface RegisterInput {
  createdBy: string;
  maxBytes: number;
}

/** Fetches a finished train/subspace job's delta and registers it as an adapter version. */
export async function registerLensJob(
  config: GatewayConfig,
  db: D1Database,
  bucket: R2Bucket,
  id: string,
  input: RegisterInput,
  scope: RequestScope,
): Promise<{ adapter: AdapterRow; created: boolean }> {
  const row = await jobRow(db, checkJobId(id));
  if (row.adapter_id) {
    const existing = await getAdapter(db, row.adapter_id);
    if (existing) return { adapter: existing, created: false };
  }
  const record = await fetchRecord(config, scope.deadline, row);
  if (record.kind !== "train" && record.kind !== "subspace") {
    throw new GatewayError(
      409,
      "invalid_request_error",
      `Lens job ${id} is a ${record.kind} job; only train and subspace jobs make deltas.`,
      "lens_job_not_delta",
    );
  }
  if (record.state !== "succeeded" || record.artifact?.kind !== "delta" || record.artifact.tensors === null) {
    throw new GatewayError(
      409,
      "invalid_request_error",
      `Lens job ${id} has not finished with a delta (state: ${record.state}).`,
      "lens_job_not_finished",
    );
  }
  if (record.artifact.bytes > input.maxBytes) {
    throw new GatewayError(
      413,
      "invalid_request_error",
      `The job's delta is ${record.artifact.bytes} bytes, over the ${input.maxBytes}-byte limit.`,
      "too_large",
    );
  }
  const base = `${row.backend_url}${LENS_PATH}/jobs/${row.id}/artifact`;
  const [tensorsRes, manifestRes] = await Promise.all([
    backendCall(config, scope.deadline, `${base}?part=tensors`),
    backendCall(config, scope.deadline, `${base}?part=manifest`),
  ]);
  const bytes = new Uint8Array(await tensorsRes.arrayBuffer());
  let manifest: unknown;
  try {
    manifest = await manifestRes.json();
  } catch {
    throw backendFailure("The backend answered a manifest that is not JSON.");
  }
  const result = await uploadAdapter(
    config,
    db,
    bucket,
    { bytes, manifest, createdBy: input.createdBy, maxBytes: input.maxBytes },
    scope,
  );
  await db.prepare("UPDATE lens_jobs SET adapter_id = ?2 WHERE id = ?1").bind(row.id, result.adapter.id).run();
  return result;
}
