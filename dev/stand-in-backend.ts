/**
 * A small stand-in GPU backend that speaks the internal protocol (validated with the shared
 * schemas) and echoes the last user message word by word. It holds every delta except those whose
 * id starts with "missing-", which it answers with `delta_not_loaded`, unless such a delta was uploaded with
 * `PUT /internal/v1/deltas/:id` (checked with the shared validator against the model shape its health
 * reports); with `strictDeltas` it holds only uploaded deltas. Each instance has one behaviour, so a
 * test or benchmark can put a healthy, a hanging or a dying backend behind the gateway.
 */
import { createHash, randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import type { IncomingMessage, ServerResponse } from "node:http";
import { serve } from "@hono/node-server";
import { type Context, Hono } from "hono";
import {
  backendAuthorization,
  type BackendErrorBody,
  GENERATE_PATH,
  type GenerateFrame,
  GenerateRequest,
  HEALTH_PATH,
  MODELS_PATH,
  NDJSON_CONTENT_TYPE,
  encodeFrame,
} from "../src/protocol/backend.js";
import { DELTAS_PATH, type DeltaErrorBody, type DeltaManifest, validateDelta } from "../src/protocol/delta.js";
import { JOB_ID_PATTERN, LENS_PATH, type LensJobRecord, LensJobRequest } from "../src/protocol/lens-jobs.js";
import { type LoggedRequest, TEST_BACKEND_SECRET, TEST_MODEL, echoReply, echoTokens } from "./echo.js";
import { TEST_FINGERPRINT, makeDelta } from "./make-delta.js";

/** The model shape every stand-in reports on its health route (what uploaded deltas must match). */
const TEST_MODEL_SHAPE = { fingerprint: TEST_FINGERPRINT, hidden_size: 8, num_layers: 4 } as const;

export type Behaviour =
  | "echo" // a healthy backend
  | "hang" // accepts the connection, never answers
  | "stall" // starts streaming, then goes silent
  | "die" // starts streaming, then drops the connection
  | "malformed" // starts streaming, then sends a line that is not a frame
  | "error-frame" // starts streaming, then reports an error frame
  | "overloaded"; // refuses with 503 overloaded

/** Routes of the internal API besides generation, which a test may slow down. */
type SideRoute = "models" | "health" | "deltas";
const SIDE_ROUTES: readonly SideRoute[] = ["models", "health", "deltas"];

export interface TestBackendOptions {
  models?: string[];
  /** Delay before each text frame, to make streams observable in time. */
  tokenDelayMs?: number;
  /** Default reply length when the request sets no max_tokens. */
  defaultMaxTokens?: number;
  /** Port to listen on (default: any free port). */
  port?: number;
  /** Hold only deltas uploaded with PUT; any other delta id is refused with delta_not_loaded. */
  strictDeltas?: boolean;
  /** Require this bearer token on the internal API, as a real backend does (not on /__log, /__reset). */
  secret?: string;
}

/** What @hono/node-server hands each request: the raw Node request and response. */
type StandInEnv = { Bindings: { incoming: IncomingMessage; outgoing: ServerResponse } };

export interface TestBackend {
  url: string;
  behaviour: Behaviour;
  close(): Promise<void>;
}

export { TEST_BACKEND_SECRET, TEST_MODEL };

/**
 * Minimal Lens job routes: every job "succeeds" at once; train and subspace jobs leave a small delta
 * (made with makeDelta for TEST_MODEL_SHAPE, id = the job id), probe and eval jobs only a result.
 */
function mountLensJobs(app: Hono<StandInEnv>, model: string): void {
  const jobs = new Map<string, { record: LensJobRecord; tensors?: Uint8Array; manifest?: string }>();
  const fail = (c: Context, code: string, message: string, status: 400 | 404 | 409) =>
    c.json({ error: { code, message } }, status);
  let seed = 100;
  app.post(`${LENS_PATH}/jobs`, async (c) => {
    const parsed = LensJobRequest.safeParse(await c.req.json().catch(() => null));
    if (!parsed.success) return fail(c, "invalid_request", parsed.error.issues[0]?.message ?? "invalid", 400);
    const req = parsed.data;
    const id = `job-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
    const now = new Date().toISOString();
    const record: LensJobRecord = {
      id,
      kind: req.kind,
      state: "succeeded",
      request: JSON.parse(JSON.stringify(req)) as LensJobRecord["request"],
      created_at: now,
      started_at: now,
      finished_at: now,
      progress: { stage: "done", done: 1, total: 1 },
      error: null,
      artifact: null,
      result: { stand_in: true },
    };
    const entry: { record: LensJobRecord; tensors?: Uint8Array; manifest?: string } = { record };
    if (req.kind === "train" || req.kind === "subspace") {
      const d = makeDelta({
        hiddenSize: TEST_MODEL_SHAPE.hidden_size,
        layers: [1, 2],
        rank: 2,
        id,
        language: req.language,
        kind: req.kind === "train" ? "adapter" : "subspace",
        seed: seed++,
      });
      d.manifest.base_model.id = model;
      entry.tensors = d.bytes;
      entry.manifest = JSON.stringify(d.manifest);
      record.artifact = {
        kind: "delta",
        id,
        tensors: `${id}.safetensors`,
        manifest: `${id}.json`,
        bytes: d.bytes.byteLength,
        sha256: createHash("sha256").update(d.bytes).digest("hex"),
      };
    }
    jobs.set(id, entry);
    return c.json({ id, state: record.state }, 202);
  });
  const lookup = (c: Context) => {
    const id = c.req.param("id") ?? "";
    if (!JOB_ID_PATTERN.test(id))
      return { error: fail(c, "invalid_request", `invalid job id ${JSON.stringify(id)}`, 400) };
    const job = jobs.get(id);
    return job ? { job } : { error: fail(c, "not_found", `no job ${id}`, 404) };
  };
  app.get(`${LENS_PATH}/jobs/:id`, (c) => {
    const found = lookup(c);
    return found.job ? c.json(found.job.record) : found.error;
  });
  app.delete(`${LENS_PATH}/jobs/:id`, (c) => {
    const found = lookup(c);
    return found.job ? fail(c, "conflict", `job ${found.job.record.id} has already finished`, 409) : found.error;
  });
  app.get(`${LENS_PATH}/jobs/:id/artifact`, (c) => {
    const found = lookup(c);
    if (!found.job) return found.error;
    if (!found.job.tensors || !found.job.manifest) return fail(c, "not_found", "this job left no delta", 404);
    return c.req.query("part") === "manifest"
      ? c.body(found.job.manifest, 200, { "content-type": "application/json" })
      : c.body(new Uint8Array(found.job.tensors), 200, { "content-type": "application/octet-stream" });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startTestBackend(behaviour: Behaviour, options: TestBackendOptions = {}): Promise<TestBackend> {
  const models = options.models ?? [TEST_MODEL];
  const log: LoggedRequest[] = [];
  const hanging = new Set<() => void>();
  const app = new Hono<StandInEnv>();

  if (options.secret !== undefined) {
    const expected = backendAuthorization(options.secret);
    app.use("/internal/*", async (c, next) => {
      if (c.req.header("authorization") !== expected)
        return c.json({ error: { code: "unauthorized", message: "no secret" } }, 401);
      return next();
    });
  }
  const held = new Map<string, DeltaManifest>();
  // Delays a test can set on the routes the gateway calls outside a generation (POST /__delay), and
  // how often each was called: to hold an answer back while another request runs.
  const delays: Record<SideRoute, number> = { models: 0, health: 0, deltas: 0 };
  const calls: Record<SideRoute, number> = { models: 0, health: 0, deltas: 0 };
  const side = (route: SideRoute) => async (_c: Context, next: () => Promise<void>) => {
    calls[route]++;
    if (delays[route] > 0) await sleep(delays[route]);
    await next();
  };
  app.post("/__delay", async (c) => {
    const body = (await c.req.json()) as Partial<Record<SideRoute, number>>;
    for (const route of SIDE_ROUTES) delays[route] = body[route] ?? 0;
    return c.json(delays);
  });
  app.get("/__calls", (c) => c.json(calls));
  app.use(HEALTH_PATH, side("health"));
  app.use(MODELS_PATH, side("models"));
  app.on("PUT", `${DELTAS_PATH}/:id`, side("deltas"));
  app.get(HEALTH_PATH, (c) => c.json({ ok: true, model: models[0], ...TEST_MODEL_SHAPE }));
  app.put(`${DELTAS_PATH}/:id`, async (c) => {
    const fail = (code: DeltaErrorBody["error"]["code"], message: string, status: 400 | 409 = 400) =>
      c.json({ error: { code, message } } satisfies DeltaErrorBody, status);
    const form = await c.req.formData().catch(() => null);
    const manifestField = form?.get("manifest");
    const tensors = form?.get("tensors");
    if (typeof manifestField !== "string" || !tensors || typeof tensors === "string")
      return fail("bad_request", "manifest and tensors are required");
    const result = validateDelta(new Uint8Array(await tensors.arrayBuffer()), JSON.parse(manifestField), {
      fingerprint: TEST_MODEL_SHAPE.fingerprint,
      hiddenSize: TEST_MODEL_SHAPE.hidden_size,
      numLayers: TEST_MODEL_SHAPE.num_layers,
      maxBytes: 1 << 24,
    });
    if (!result.ok)
      return fail(result.error.code, result.error.message, result.error.code === "fingerprint_mismatch" ? 409 : 400);
    if (result.delta.manifest.id !== c.req.param("id")) return fail("id_mismatch", "path id differs from manifest.id");
    held.set(result.delta.manifest.id, result.delta.manifest);
    return c.json(result.delta.manifest, 201);
  });
  app.get(DELTAS_PATH, (c) => c.json({ deltas: [...held.values()] }));
  app.get(MODELS_PATH, (c) =>
    c.json({ models: models.map((id) => ({ id, created: 1_700_000_000, owned_by: "lens-test" })) }),
  );
  mountLensJobs(app, models[0] ?? TEST_MODEL);
  app.get("/__log", (c) => c.json(log));
  app.post("/__reset", (c) => {
    log.length = 0;
    held.clear();
    for (const route of SIDE_ROUTES) {
      delays[route] = 0;
      calls[route] = 0;
    }
    return c.json({ ok: true });
  });

  app.post(GENERATE_PATH, async (c) => {
    const parsed = GenerateRequest.safeParse(await c.req.json().catch(() => null));
    if (!parsed.success) {
      const body: BackendErrorBody = {
        error: { code: "invalid_request", message: parsed.error.issues[0]?.message ?? "invalid" },
      };
      return c.json(body, 400);
    }
    const req = parsed.data;
    const entry: LoggedRequest = {
      request_id: req.request_id,
      model: req.model,
      language: req.language,
      delta: req.delta?.id ?? null,
      max_tokens: req.sampling.max_tokens ?? null,
      stop: req.sampling.stop,
      outcome: "open",
    };
    log.push(entry);
    let ended = false;
    c.env.outgoing.on("close", () => {
      entry.outcome = ended ? "completed" : "aborted";
    });
    if (!models.includes(req.model)) {
      const body: BackendErrorBody = {
        error: { code: "model_not_found", message: `model '${req.model}' is not served here` },
      };
      return c.json(body, 404);
    }
    if (req.delta && !held.has(req.delta.id) && (options.strictDeltas || req.delta.id.startsWith("missing-"))) {
      const body: BackendErrorBody = {
        error: { code: "delta_not_loaded", message: `delta '${req.delta.id}' is not loaded here` },
      };
      return c.json(body, 409);
    }
    if (behaviour === "overloaded") {
      const body: BackendErrorBody = { error: { code: "overloaded", message: "queue full" } };
      c.header("retry-after", "7");
      return c.json(body, 503);
    }
    if (behaviour === "hang") {
      await new Promise<void>((resolve) => hanging.add(resolve));
      return c.body(null, 503);
    }

    const lastUser = req.messages.filter((m) => m.role === "user").at(-1)?.content ?? "";
    const promptTokens = req.messages.reduce((n, m) => n + new TextEncoder().encode(m.content).length, 0);
    const maxTokens = req.sampling.max_tokens ?? options.defaultMaxTokens ?? 256;
    const socket = c.env.incoming.socket;
    const encoder = new TextEncoder();

    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        const send = (frame: GenerateFrame) => controller.enqueue(encoder.encode(encodeFrame(frame)));
        send({ type: "start", model: req.model, prompt_tokens: promptTokens });
        const tokens = echoTokens(echoReply(lastUser));
        let text = "";
        let finish: "stop" | "length" = "stop";
        let produced = 0;
        for (const token of tokens) {
          if (produced >= maxTokens) {
            finish = "length";
            break;
          }
          if (options.tokenDelayMs) await sleep(options.tokenDelayMs);
          if (entry.outcome === "aborted") return;
          if (produced === 2 && behaviour !== "echo") {
            if (behaviour === "die") {
              // Let what was sent so far reach the client first: the failure must come mid-stream.
              await sleep(50);
              socket.destroy();
              return;
            }
            if (behaviour === "stall") {
              await new Promise<void>((resolve) => hanging.add(resolve));
              return;
            }
            if (behaviour === "malformed") {
              controller.enqueue(encoder.encode("this is not a frame\n"));
              controller.close();
              return;
            }
            if (behaviour === "error-frame") {
              send({ type: "error", error: { code: "internal", message: "the model crashed" } });
              controller.close();
              return;
            }
          }
          const next = text + token;
          const stopAt = req.sampling.stop
            .map((s) => next.indexOf(s))
            .filter((i) => i >= 0)
            .sort((a, b) => a - b)[0];
          produced++;
          if (stopAt !== undefined) {
            if (stopAt > text.length) send({ type: "text", text: next.slice(text.length, stopAt) });
            text = next.slice(0, stopAt);
            finish = "stop";
            break;
          }
          send({ type: "text", text: token });
          text = next;
        }
        send({
          type: "end",
          finish_reason: finish,
          usage: { prompt_tokens: promptTokens, completion_tokens: produced },
        });
        ended = true;
        controller.close();
      },
    });
    return c.body(stream, 200, { "content-type": NDJSON_CONTENT_TYPE });
  });

  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: options.port ?? 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    behaviour,
    close: () =>
      new Promise<void>((resolve) => {
        for (const release of hanging) release();
        if ("closeAllConnections" in server) server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
