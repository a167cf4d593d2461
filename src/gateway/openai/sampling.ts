import type { SamplingParams } from "../../protocol/backend.js";
import type { ChatCompletionRequest } from "../../protocol/openai.js";

/** OpenAI's sampling fields as the backend takes them (OpenAI's defaults where unset). */
export function samplingOf(body: ChatCompletionRequest): SamplingParams {
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  return {
    temperature: body.temperature ?? 1,
    top_p: body.top_p ?? 1,
    stop: body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop,
    ...(maxTokens != null ? { max_tokens: maxTokens } : {}),
    ...(body.seed != null ? { seed: body.seed } : {}),
  };
}
