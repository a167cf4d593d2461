/** The one place that decides where a chat request goes. */
import type { DeltaRef, GenerateRequest, SamplingParams } from "../../protocol/backend.js";
import type { LanguageOrUnd } from "../../protocol/languages.js";
import type { ChatMessage } from "../../protocol/openai.js";
import type { GatewayConfig } from "../env.js";
import type { RequestScope } from "../request-scope.js";
import { GatewayError, noBackend, notFound } from "../errors.js";
import { preferenceOrder } from "./backends/affinity.js";
import { backendsFor } from "./backends/catalog.js";
import { type OpenGeneration, openGeneration } from "./backends/client.js";
import { type DeltaSource, retryWithDelta } from "./deltas/sync.js";

export interface RouteInput {
  requestId: string;
  model: string;
  messages: ChatMessage[];
  sampling: SamplingParams;
  language: LanguageOrUnd;
  delta: DeltaRef | null;
}

export interface RoutedChat {
  generation: OpenGeneration;
  /** The delta the generation really carries: null when none was asked for or it could not be applied. */
  delta: DeltaRef | null;
}

export async function routeChat(
  config: GatewayConfig,
  input: RouteInput,
  deltas: DeltaSource,
  scope: RequestScope,
): Promise<RoutedChat> {
  if (config.backendUrls.length === 0) throw noBackend("No backends are configured (BACKEND_URLS is empty).");
  const { catalog, backends } = await backendsFor(config, input.model, scope);
  if (backends.length === 0) {
    if (catalog.models.length === 0) throw noBackend();
    throw notFound(
      `The model '${input.model}' does not exist; GET /v1/models lists the models served here.`,
      "model_not_found",
      "model",
    );
  }
  const request: GenerateRequest = {
    request_id: input.requestId,
    model: input.model,
    messages: input.messages,
    sampling: input.sampling,
    language: input.language,
    delta: input.delta,
  };
  const order = preferenceOrder(backends, input.language);
  try {
    return { generation: await openGeneration(config, request, order, scope.deadline), delta: input.delta };
  } catch (err) {
    // A delta must never fail a request: without it, the base model answers (and the headers say so).
    if (!(input.delta && err instanceof GatewayError && err.code === "delta_not_loaded")) throw err;
    // The backend lacks it: send it from R2 and retry there once.
    const retried = await retryWithDelta(config, deltas, request, backends, input.language, scope);
    if (retried) return { generation: retried, delta: input.delta };
    return {
      generation: await openGeneration(config, { ...request, delta: null }, order, scope.deadline),
      delta: null,
    };
  }
}
