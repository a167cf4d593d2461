import type { Context } from "hono";
import { z } from "zod";
import type { GatewayEnv } from "../env.js";
import { notFound } from "../errors.js";
import { parseJsonBody, validate } from "../json-body.js";
import { attachFeedback } from "../services/request-records.js";

const Feedback = z.strictObject({
  request_id: z.string().min(1).max(200),
  /** -1 (bad) .. 1 (good); thumbs up/down are 1 and -1. */
  score: z.number().finite().min(-1).max(1),
});

/** POST /v1/feedback `{ "request_id": "...", "score": -1..1 }`: sets (or replaces) a request's feedback. */
export async function feedbackHandler(c: Context<GatewayEnv>): Promise<Response> {
  const input = validate(Feedback, parseJsonBody(await c.req.text()));
  if (!(await attachFeedback(c.env.DB, c.get("keyId"), input.request_id, input.score))) {
    throw notFound(
      `No request with id '${input.request_id}' was made with this key.`,
      "request_not_found",
      "request_id",
    );
  }
  return c.json({ object: "feedback", request_id: input.request_id, score: input.score });
}
