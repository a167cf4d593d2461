/**
 * The internal API for Lens jobs on the backend (probe, train, subspace, eval), mounted at
 * LENS_PATH (`/internal/v1/lens`); see src/gpu-backend/lens/jobs/routes.ts for the routes,
 * jobs/runner.ts for the queue, and jobs/<kind>-job.ts for what each job does.
 *
 * Shared by the gateway (which will forward admin requests) and the backend, so this file uses no
 * Node APIs. Every id a request names is checked against a strict pattern here, before the backend
 * lets it anywhere near its file system.
 */
import { z } from "zod";
import { DeltaId } from "./delta.js";
import { LANGUAGES } from "./languages.js";

/** Where the backend mounts the Lens job routes. */
export const LENS_PATH = "/internal/v1/lens";

/** Job ids are made by the backend: `job-` + base-36 time + `-` + 8 random hex digits. */
export const JOB_ID_PATTERN = /^job-[0-9a-z]{6,12}-[0-9a-f]{8}$/;
export const JobId = z.string().regex(JOB_ID_PATTERN, "job id must look like job-<time>-<8 hex>");

/** An artifact named by the job that made it (a JobId) or by its own id (a DeltaId); job ids are DeltaIds too. */
const ArtifactRef = z
  .string()
  .regex(
    /^(?!\.+$)[A-Za-z0-9._-]{1,128}$/,
    "must be a job id or an artifact id: 1-128 of A-Z a-z 0-9 . _ -, not only dots",
  );
/** A probe named by the probe job that made it, or by the probe's own id. */
const ProbeRef = ArtifactRef;
/** A delta named by the train or subspace job that made it, or by the delta's own id. */
const DeltaRef = ArtifactRef;

const Language = z.enum(LANGUAGES);
const Layer = z.number().int().nonnegative().max(1023);
const distinct = <T>(xs: T[]) => new Set(xs).size === xs.length;

/** A prompt text: non-empty, bounded (the probe cuts to its token budget anyway). */
const PromptText = z.string().min(1).max(4000);
/** At most this many prompts per language in one job. */
const MAX_PROMPTS_PER_LANGUAGE = 2000;

export const ProbeJobRequest = z
  .object({
    kind: z.literal("probe"),
    languages: z.array(Language).min(2).refine(distinct, "languages must be distinct"),
    layers: z.array(Layer).min(1).max(64).refine(distinct, "layers must be distinct"),
    /**
     * "probe": rows of the held-out `probe` split that have every language (parallel), the first
     * `per_language` of them; or explicit lists per language (need not be parallel).
     */
    prompts: z
      .union([z.literal("probe"), z.partialRecord(Language, z.array(PromptText).min(1).max(MAX_PROMPTS_PER_LANGUAGE))])
      .default("probe"),
    per_language: z.number().int().positive().max(MAX_PROMPTS_PER_LANGUAGE).default(200),
    central: Language.default("en"),
    /** r (default L - 1). */
    rank: z.number().int().positive().optional(),
    max_prompt_tokens: z.number().int().positive().max(4096).optional(),
    truncation: z.enum(["content", "head"]).optional(),
    system: z.string().max(4000).optional(),
  })
  .strict()
  .refine((r) => r.languages.includes(r.central), {
    message: "languages must include the central language",
    path: ["central"],
  })
  .refine(
    (r) => typeof r.prompts === "string" || r.languages.every((l) => l in (r.prompts as Record<string, unknown>)),
    {
      message: "explicit prompts need a list for every language",
      path: ["prompts"],
    },
  )
  .refine(
    (r) =>
      typeof r.prompts === "string" ||
      Object.keys(r.prompts).every((l) => r.languages.includes(l as (typeof LANGUAGES)[number])),
    {
      message: "explicit prompts name a language not in languages",
      path: ["prompts"],
    },
  );

export const TrainJobRequest = z
  .object({
    kind: z.literal("train"),
    probe: ProbeRef,
    language: Language,
    rank: z.number().int().positive().max(256).default(4),
    steps: z.number().int().nonnegative().max(100_000).optional(),
    lr: z.number().positive().max(10).optional(),
    weights: z
      .object({
        w_r: z.number().nonnegative().finite().optional(),
        w_a: z.number().nonnegative().finite().optional(),
        alpha: z.number().finite().optional(),
      })
      .strict()
      .default({}),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1)
      .optional(),
    /** "train": parallel rows of the held-out `train` split with the central and target language; or explicit parallel lists. */
    prompts: z
      .union([
        z.literal("train"),
        z
          .object({
            central: z.array(PromptText).min(1).max(MAX_PROMPTS_PER_LANGUAGE),
            target: z.array(PromptText).min(1).max(MAX_PROMPTS_PER_LANGUAGE),
          })
          .strict(),
      ])
      .default("train"),
    per_language: z.number().int().positive().max(MAX_PROMPTS_PER_LANGUAGE).default(200),
    dtype: z.enum(["float32", "float16"]).default("float32"),
    /** Also put the delta into the backend's delta store once trained. */
    load: z.boolean().default(false),
    description: z.string().max(4000).optional(),
  })
  .strict()
  .refine((r) => typeof r.prompts === "string" || r.prompts.central.length === r.prompts.target.length, {
    message: "central and target prompts must be parallel (same length)",
    path: ["prompts"],
  });

export const SubspaceJobRequest = z
  .object({
    kind: z.literal("subspace"),
    probe: ProbeRef,
    language: Language,
    layers: z.array(Layer).min(1).max(64).refine(distinct, "layers must be distinct"),
    lambda: z.number().finite(),
    alpha: z.number().finite(),
    dtype: z.enum(["float32", "float16"]).default("float32"),
    load: z.boolean().default(false),
    description: z.string().max(4000).optional(),
  })
  .strict();

export const EvalJobRequest = z
  .object({
    kind: z.literal("eval"),
    /** The delta to evaluate: a train or subspace job, or a delta id those jobs made. */
    delta: DeltaRef,
    /** Prompts of the held-out `eval` split per language. */
    per_language: z.number().int().positive().max(MAX_PROMPTS_PER_LANGUAGE).default(50),
    /** Greedy reply length for the fidelity figure (default 48). */
    max_tokens: z.number().int().positive().max(1024).optional(),
  })
  .strict();

export const LensJobRequest = z.discriminatedUnion("kind", [
  ProbeJobRequest,
  TrainJobRequest,
  SubspaceJobRequest,
  EvalJobRequest,
]);
export type LensJobRequest = z.infer<typeof LensJobRequest>;
export type LensJobRequestInput = z.input<typeof LensJobRequest>;
export type ProbeJobRequest = z.infer<typeof ProbeJobRequest>;
export type TrainJobRequest = z.infer<typeof TrainJobRequest>;
export type SubspaceJobRequest = z.infer<typeof SubspaceJobRequest>;
export type EvalJobRequest = z.infer<typeof EvalJobRequest>;

export const LensJobState = z.enum(["queued", "running", "succeeded", "failed", "cancelled"]);
export type LensJobState = z.infer<typeof LensJobState>;
export const TERMINAL_STATES: readonly LensJobState[] = ["succeeded", "failed", "cancelled"];

const LossSnapshot = z.object({ total: z.number(), retain: z.number(), push: z.number(), align: z.number() }).strict();

export const LensJobProgress = z
  .object({
    /** What the job is doing now ("collecting", "fitting", "writing", ...). */
    stage: z.string(),
    /** Units done and in all, within the stage (languages, prompts or steps). */
    done: z.number().int().nonnegative(),
    total: z.number().int().nonnegative(),
    /** Training only: the latest step's losses (at the parameters before that step). */
    losses: LossSnapshot.optional(),
  })
  .strict();
export type LensJobProgress = z.infer<typeof LensJobProgress>;

/** Files a finished job left (names only; fetch them through GET /jobs/:id/artifact). */
export const LensJobArtifact = z
  .object({
    kind: z.enum(["probe", "delta", "report"]),
    /** The probe or delta id (a DeltaId), or the job id for a report. */
    id: DeltaId,
    tensors: z.string().nullable(),
    manifest: z.string(),
    bytes: z.number().int().nonnegative(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  })
  .strict();
export type LensJobArtifact = z.infer<typeof LensJobArtifact>;

export const LensJobRecord = z
  .object({
    id: JobId,
    kind: z.enum(["probe", "train", "subspace", "eval"]),
    state: LensJobState,
    request: z.record(z.string(), z.json()),
    created_at: z.iso.datetime({ offset: true }),
    started_at: z.iso.datetime({ offset: true }).nullable(),
    finished_at: z.iso.datetime({ offset: true }).nullable(),
    progress: LensJobProgress.nullable(),
    error: z.object({ message: z.string() }).strict().nullable(),
    artifact: LensJobArtifact.nullable(),
    /** Figures a finished job reports (counts, losses, timings, whether a delta was loaded). */
    result: z.record(z.string(), z.json()).nullable(),
  })
  .strict();
export type LensJobRecord = z.infer<typeof LensJobRecord>;

/** Which file of an artifact GET /jobs/:id/artifact returns (default: the tensors, or the manifest for a report). */
export const ArtifactPart = z.enum(["tensors", "manifest"]);

export const LensJobErrorCode = z.enum(["invalid_request", "not_found", "conflict", "not_available", "internal"]);
export type LensJobErrorCode = z.infer<typeof LensJobErrorCode>;
export interface LensJobErrorBody {
  error: { code: LensJobErrorCode; message: string };
}
