/**
 * Reads and validates a JSON request body (the OpenAI API and the admin API alike); every failure is
 * a 400 that names the field, in OpenAI's words. Not @hono/zod-validator: its json target validates
 * an empty object when the content type is not JSON (hono/validator skips the body), and answers
 * malformed JSON with its own HTTPException before any hook runs, where OpenAI (and so this gateway)
 * reads the body whatever the content type says.
 */
import type { z } from "zod";
import { invalidRequest } from "./errors.js";

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out;
}

function describeIssue(issue: z.core.$ZodIssue): { message: string; param: string | null } {
  const param = formatPath(issue.path);
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.map((k) => (param ? `${param}.${k}` : k));
    return { message: `Unrecognized request argument supplied: ${keys.join(", ")}`, param: keys[0] ?? null };
  }
  if (param === "") return { message: `Invalid request body: ${issue.message}`, param: null };
  if (issue.code === "invalid_type" && issue.input === undefined) {
    return { message: `Missing required parameter: '${param}'.`, param };
  }
  return { message: `Invalid value for '${param}': ${issue.message}`, param };
}

export function parseJsonBody(text: string): unknown {
  if (text.trim() === "") throw invalidRequest("The request body is empty; send a JSON object.", null, "invalid_json");
  try {
    return JSON.parse(text);
  } catch {
    throw invalidRequest(
      "We could not parse the JSON body of your request. The body must be a JSON object.",
      null,
      "invalid_json",
    );
  }
}

export function validate<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  // The first issue is the one reported: OpenAI, too, names one field at a time.
  const first = result.error.issues[0];
  const { message, param } = first ? describeIssue(first) : { message: "Invalid request body.", param: null };
  throw invalidRequest(message, param, "invalid_request_body");
}
