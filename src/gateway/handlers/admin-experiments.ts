import type { Context } from "hono";
import { z } from "zod";
import type { GatewayEnv } from "../env.js";
import { notFound } from "../errors.js";
import { parseJsonBody, validate } from "../json-body.js";
import { GuardrailDeclarations } from "../services/experiments/guardrails.js";
import { experimentResults } from "../services/experiments/results.js";
import {
  changeState,
  createExperiment,
  getExperiment,
  listExperiments,
  promoteArm,
} from "../services/experiments/store.js";

const Arm = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9._-]+$/, "letters, digits and ._- only"),
  delta: z.string().min(1).max(200).nullable(),
  scale: z.number().finite().min(-4).max(4).default(1),
  weight: z.number().finite().positive().max(1_000_000),
});

const CreateExperiment = z.strictObject({
  name: z.string().min(1).max(200),
  languages: z.array(z.string().min(1).max(35)).min(1).max(50),
  arms: z
    .array(Arm)
    .min(2)
    .max(20)
    .refine((arms) => new Set(arms.map((a) => a.name)).size === arms.length, "arm names must be unique"),
  /** Metrics no arm may make worse than the control; a breach stops the experiment. */
  guardrails: GuardrailDeclarations.optional(),
});

const Promote = z.strictObject({ arm: z.string().min(1).max(64) });

const show = <T extends object>(e: T) => ({ object: "experiment", ...e });

export async function createExperimentHandler(c: Context<GatewayEnv>): Promise<Response> {
  const input = validate(CreateExperiment, parseJsonBody(await c.req.text()));
  return c.json(show(await createExperiment(c.env.DB, input, c.get("keyId"))), 201);
}

export async function listExperimentsHandler(c: Context<GatewayEnv>): Promise<Response> {
  return c.json({ object: "list", data: (await listExperiments(c.env.DB)).map(show) });
}

export async function getExperimentHandler(c: Context<GatewayEnv>): Promise<Response> {
  const id = c.req.param("id") ?? "";
  const e = await getExperiment(c.env.DB, id);
  if (!e) throw notFound(`No experiment with id '${id}'.`, "experiment_not_found");
  return c.json(show(e));
}

export const experimentStateHandler =
  (action: "pause" | "resume" | "stop") =>
  async (c: Context<GatewayEnv>): Promise<Response> =>
    c.json(show(await changeState(c.env.DB, c.req.param("id") ?? "", action)));

export async function promoteExperimentHandler(c: Context<GatewayEnv>): Promise<Response> {
  const input = validate(Promote, parseJsonBody(await c.req.text()));
  return c.json(show(await promoteArm(c.env.DB, c.req.param("id") ?? "", input.arm)));
}

export async function experimentResultsHandler(c: Context<GatewayEnv>): Promise<Response> {
  return c.json({ object: "experiment.results", ...(await experimentResults(c.env.DB, c.req.param("id") ?? "")) });
}
