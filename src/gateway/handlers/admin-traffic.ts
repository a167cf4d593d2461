import type { Context } from "hono";
import { z } from "zod";
import type { GatewayEnv } from "../env.js";
import { invalidRequest } from "../errors.js";
import { MAX_TRAFFIC_HOURS, hourlyTraffic } from "../services/console/traffic.js";

const TrafficQuery = z.strictObject({
  hours: z
    .string()
    .regex(/^[0-9]{1,4}$/, "a whole number of hours")
    .transform(Number)
    .pipe(z.number().int().min(1).max(MAX_TRAFFIC_HOURS))
    .default(24),
});

/** GET /admin/traffic?hours=24: requests, errors, fidelity and latency per language and hour, base vs edited. */
export async function trafficHandler(c: Context<GatewayEnv>): Promise<Response> {
  const parsed = TrafficQuery.safeParse(c.req.query());
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const param = issue?.path.join(".") || "hours";
    throw invalidRequest(
      `Invalid query parameter '${param}': ${issue?.message ?? "invalid"} (1 to ${MAX_TRAFFIC_HOURS}).`,
      param,
      "invalid_query",
    );
  }
  const hours = parsed.data.hours;
  return c.json({ object: "traffic", hours, ...(await hourlyTraffic(c.env.DB, hours)) });
}
