import type { Context } from "hono";
import { ChatCompletionRequest } from "../../protocol/openai.js";
import { type GatewayEnv, gatewayConfig } from "../env.js";
import { toGatewayError } from "../errors.js";
import { chooseLanguage, parseLensMode } from "../language/choose.js";
import { parseJsonBody, validate } from "../json-body.js";
import { collectCompletion, streamCompletion } from "../openai/responses.js";
import { samplingOf } from "../openai/sampling.js";
import { type RequestScope, scopeOf } from "../request-scope.js";
import { chooseDelta } from "../services/deltas/choice.js";
import { guardrailCheckAfterRecord } from "../services/experiments/guardrail-watch.js";
import { admitChat, effectiveLimits } from "../services/rate-limit/admission.js";
import { RequestRecorder } from "../services/request-records.js";
import { routeChat } from "../services/routing.js";

export async function chatCompletions(c: Context<GatewayEnv>): Promise<Response> {
  const scope = scopeOf(c);
  const config = gatewayConfig(c.env);
  const record = new RequestRecorder(
    c.get("bindings").DB,
    scope.waitUntil,
    c.get("requestId"),
    c.get("keyId"),
    config.backendTimeoutMs,
  );
  try {
    return await answer(c, record, scope);
  } catch (err) {
    record.fail(toGatewayError(err).status);
    throw err;
  }
}

async function answer(c: Context<GatewayEnv>, record: RequestRecorder, scope: RequestScope): Promise<Response> {
  const config = gatewayConfig(c.env);
  // Before the body is parsed: a key over its limit costs no validation and no backend time.
  const grant = await admitChat(c.env, record.keyId, effectiveLimits(c.get("keyLimits"), config), scope.deadline);
  for (const [name, value] of Object.entries(grant.headers)) c.header(name, value);
  record.onTokens = grant.spend;
  const body = validate(ChatCompletionRequest, parseJsonBody(await c.req.text()));
  record.model = body.model;
  record.stream = body.stream === true;
  const mode = parseLensMode(c.req.header("x-lens-mode"));
  const { language } = chooseLanguage(body.messages, c.req.header("x-lens-language"));
  record.language = language;
  c.header("x-lens-language", language);
  const { delta: wanted, assigned } = await chooseDelta(
    c.env.DB,
    language,
    mode,
    body.user ?? record.keyId,
    scope.deadline,
  );
  if (assigned) {
    c.header("x-lens-arm", assigned.arm);
    record.experimentId = assigned.experimentId;
    record.arm = assigned.arm;
    record.afterWrite = guardrailCheckAfterRecord(c.get("bindings").DB, assigned.experiment, config.backendTimeoutMs);
  }

  const requestId = record.id;
  const { generation, delta } = await routeChat(
    config,
    { requestId, model: body.model, messages: body.messages, sampling: samplingOf(body), language, delta: wanted },
    { db: c.env.DB, bucket: c.env.ADAPTERS },
    scope,
  );
  // The backend has started: from here the reply's pace is the idle timeout's business.
  scope.deadline.answerStarted();
  c.header("x-lens-delta", delta ? delta.id : "none");
  record.deltaId = delta ? delta.id : null;
  record.model = generation.start.model;
  record.promptTokens = generation.start.prompt_tokens;
  const meta = {
    id: `chatcmpl-${requestId}`,
    created: Math.floor(Date.now() / 1000),
    model: generation.start.model,
    includeUsage: body.stream_options?.include_usage === true,
  };
  const onFinish = record.finish.bind(record);
  // Aborted when the client hangs up (the enable_request_signal compatibility flag).
  const clientGone = c.req.raw.signal;
  if (!body.stream) return c.json(await collectCompletion(generation.frames, meta, (s) => onFinish(s), clientGone));
  c.header("content-type", "text/event-stream; charset=utf-8");
  c.header("cache-control", "no-cache");
  // The stream keeps its request open (for its record) only once its client reads, and ends when
  // the client hangs up, stops reading for the idle timeout, or the answer is done.
  return c.body(
    streamCompletion(generation.frames, meta, onFinish, {
      clientGone,
      keepOpen: scope.waitUntil,
      readerIdleMs: config.backendIdleTimeoutMs,
    }),
  );
}
