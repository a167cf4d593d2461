/**
 * OpenAI's chat completion wire format, as far as this product serves it. Requests are validated
 * strictly: a field we do not implement is an error that names it, never silently ignored.
 */
import { z } from "zod";

const unsupported = (what: string) =>
  z.unknown().refine(() => false, { error: `${what} is not supported by this gateway` });

/** Accepts the field only when it has its neutral value (what OpenAI does by default). */
const onlyNeutral = <T extends z.ZodType>(schema: T, isNeutral: (v: z.infer<T>) => boolean, what: string) =>
  schema.nullish().refine((v) => v === null || v === undefined || isNeutral(v as z.infer<T>), {
    error: `${what} is not supported by this gateway`,
  });

const ContentPart = z
  .looseObject({ type: z.string() })
  .superRefine((part, ctx) => {
    switch (part.type) {
      case "text":
        if (typeof part["text"] !== "string") {
          ctx.addIssue({ code: "custom", path: ["text"], message: "a text content part needs a string 'text'" });
        }
        return;
      case "image_url":
      case "input_image":
        ctx.addIssue({
          code: "custom",
          path: ["type"],
          message: "image inputs are not supported: the models served here take text only",
        });
        return;
      case "input_audio":
        ctx.addIssue({
          code: "custom",
          path: ["type"],
          message: "audio inputs are not supported: the models served here take text only",
        });
        return;
      case "file":
        ctx.addIssue({
          code: "custom",
          path: ["type"],
          message: "file inputs are not supported: the models served here take text only",
        });
        return;
      default:
        ctx.addIssue({
          code: "custom",
          path: ["type"],
          message: `unknown content part type '${part.type}'; expected 'text'`,
        });
    }
  })
  .transform((part) => part["text"] as string);

const Content = z.union([z.string(), z.array(ContentPart)], {
  error: "expected a string or an array of text content parts",
});

const Role = z.enum(["system", "developer", "user", "assistant"], {
  error: (issue) =>
    issue.input === "tool" || issue.input === "function"
      ? `'${String(issue.input)}' messages are not supported: tools and function calling are not supported by this gateway`
      : "expected one of 'system', 'developer', 'user', 'assistant'",
});

const Message = z
  .strictObject({
    role: Role,
    content: Content.nullish(),
    name: z.string().max(256).optional(),
    refusal: z.string().nullish(),
    tool_calls: unsupported("tool_calls (function calling)").optional(),
    function_call: unsupported("function_call").optional(),
    tool_call_id: unsupported("tool_call_id").optional(),
    audio: unsupported("audio").optional(),
  })
  .superRefine((m, ctx) => {
    if ((m.content === null || m.content === undefined) && m.role !== "assistant") {
      ctx.addIssue({ code: "custom", path: ["content"], message: `a '${m.role}' message needs content` });
    }
  })
  .transform((m) => ({
    // 'developer' is OpenAI's newer name for the system role.
    role: m.role === "developer" ? ("system" as const) : m.role,
    content: Array.isArray(m.content) ? m.content.join("") : (m.content ?? ""),
  }));

export const ChatCompletionRequest = z
  .strictObject({
    model: z.string().min(1, { error: "model must be a non-empty string" }),
    messages: z.array(Message).min(1, { error: "messages must hold at least one message" }),
    stream: z.boolean().nullish(),
    stream_options: z
      .strictObject({ include_usage: z.boolean().nullish(), include_obfuscation: z.boolean().nullish() })
      .nullish(),
    max_tokens: z.number().int().positive().nullish(),
    max_completion_tokens: z.number().int().positive().nullish(),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().min(0).max(1).nullish(),
    seed: z.number().int().nullish(),
    stop: z
      .union([z.string().min(1), z.array(z.string().min(1)).max(4)], {
        error: "stop must be a non-empty string or an array of at most 4 non-empty strings",
      })
      .nullish(),
    user: z.string().max(512).nullish(),
    n: onlyNeutral(z.number().int().positive(), (v) => v === 1, "n > 1"),
    presence_penalty: onlyNeutral(z.number().min(-2).max(2), (v) => v === 0, "a non-zero presence_penalty"),
    frequency_penalty: onlyNeutral(z.number().min(-2).max(2), (v) => v === 0, "a non-zero frequency_penalty"),
    logprobs: onlyNeutral(z.boolean(), (v) => v === false, "logprobs"),
    top_logprobs: unsupported("top_logprobs").optional(),
    logit_bias: onlyNeutral(z.record(z.string(), z.number()), (v) => Object.keys(v).length === 0, "logit_bias"),
    response_format: onlyNeutral(
      z.looseObject({ type: z.string() }),
      (v) => v.type === "text",
      "a response_format other than text",
    ),
    modalities: onlyNeutral(z.array(z.string()), (v) => v.every((m) => m === "text"), "a modality other than text"),
    tools: unsupported("tools (function calling)").optional(),
    tool_choice: unsupported("tool_choice (function calling)").optional(),
    parallel_tool_calls: unsupported("parallel_tool_calls (function calling)").optional(),
    functions: unsupported("functions (function calling)").optional(),
    function_call: unsupported("function_call (function calling)").optional(),
    audio: unsupported("audio output").optional(),
    prediction: unsupported("prediction (predicted outputs)").optional(),
    web_search_options: unsupported("web search").optional(),
    reasoning_effort: unsupported("reasoning_effort").optional(),
    // Accepted and not acted on: they change nothing about the output.
    metadata: z.record(z.string(), z.string()).nullish(),
    store: z.boolean().nullish(),
    service_tier: z.string().nullish(),
  })
  .superRefine((r, ctx) => {
    if (r.stream_options && !r.stream) {
      ctx.addIssue({
        code: "custom",
        path: ["stream_options"],
        message: "stream_options is only allowed when stream is true",
      });
    }
  });

export type ChatCompletionRequest = z.output<typeof ChatCompletionRequest>;
export type ChatMessage = ChatCompletionRequest["messages"][number];

export type OpenAIErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error"
  | "api_error";

export interface OpenAIErrorBody {
  error: { message: string; type: OpenAIErrorType; param: string | null; code: string | null };
}

export interface ChatCompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  system_fingerprint: string | null;
  choices: Array<{
    index: 0;
    message: { role: "assistant"; content: string; refusal: null };
    logprobs: null;
    finish_reason: "stop" | "length";
  }>;
  usage: ChatCompletionUsage;
}

export interface ModelList {
  object: "list";
  data: Array<{ id: string; object: "model"; created: number; owned_by: string }>;
}
