/**
 * A/B experiments: a running experiment splits its languages' requests between arms, each arm a
 * delta (an uploaded adapter version at a scale) or the base model. At most one running experiment
 * per language (the experiment_running table's primary key); a chat request looks its language's
 * up through a per-isolate cache, like the active delta.
 */
import type { DeltaRef } from "../../../protocol/backend.js";
import { type Language, isLanguage } from "../../../protocol/languages.js";
import { type Deadline, storageTimeout } from "../../deadline.js";
import { GatewayError, invalidRequest, notFound } from "../../errors.js";
import { getAdapter } from "../deltas/adapters.js";
import { setLanguageAdapter } from "../deltas/language-adapters.js";
import { assignArm } from "./assign.js";
import {
  type GuardrailDeclaration,
  GuardrailDeclarations,
  type GuardrailMetric,
  type GuardrailStatus,
} from "./guardrails.js";

export type ExperimentState = "running" | "paused" | "stopped";

interface ExperimentArm {
  name: string;
  /** The adapter version id, or null for the base model. */
  delta: string | null;
  /** That adapter's delta id (the name backends know), or null. */
  delta_id: string | null;
  scale: number;
  weight: number;
}

/** Why an experiment stopped. */
export type StopReason =
  | { by: "operator" }
  | { by: "promotion"; arm: string }
  | {
      by: "guardrail";
      arm: string;
      metric: GuardrailMetric;
      reason: string;
      /** The guardrail's figures when it fired, and each arm's request count then. */
      figures: GuardrailStatus;
      requests: { arm: number; control: number };
    };

export interface Experiment {
  id: string;
  name: string;
  languages: Language[];
  arms: ExperimentArm[];
  state: ExperimentState;
  promoted_arm: string | null;
  /** Metrics the arms must not make worse; a breach stops the experiment (guardrail-watch.ts). */
  guardrails: GuardrailDeclaration[];
  stop_reason: StopReason | null;
  stopped_at: number | null;
  guardrails_checked_at: number | null;
  created_at: number;
  created_by: string;
  updated_at: number;
}

interface ExperimentDbRow extends Omit<Experiment, "languages" | "arms" | "guardrails" | "stop_reason"> {
  languages: string;
  arms: string;
  guardrails: string;
  stop_reason: string | null;
}

export interface NewExperiment {
  name: string;
  languages: string[];
  arms: { name: string; delta: string | null; scale: number; weight: number }[];
  guardrails?: GuardrailDeclaration[];
}

const CACHE_MS = 10_000;
const runningCache = new Map<string, { experiment: Experiment | null; until: number }>();

function forgetRunning(): void {
  runningCache.clear();
}

const fromRow = (r: ExperimentDbRow): Experiment => ({
  ...r,
  languages: JSON.parse(r.languages) as Language[],
  arms: JSON.parse(r.arms) as ExperimentArm[],
  // Written by createExperiment after the same validation; parsed again so defaults apply.
  guardrails: GuardrailDeclarations.parse(JSON.parse(r.guardrails)),
  stop_reason: r.stop_reason === null ? null : (JSON.parse(r.stop_reason) as StopReason),
});

const conflict = (message: string, code: string) => new GatewayError(409, "invalid_request_error", message, code);

export async function getExperiment(db: D1Database, id: string): Promise<Experiment | null> {
  const row = await db.prepare("SELECT * FROM experiments WHERE id = ?1").bind(id).first<ExperimentDbRow>();
  return row ? fromRow(row) : null;
}

async function mustGet(db: D1Database, id: string): Promise<Experiment> {
  const e = await getExperiment(db, id);
  if (!e) throw notFound(`No experiment with id '${id}'.`, "experiment_not_found");
  return e;
}

export async function listExperiments(db: D1Database): Promise<Experiment[]> {
  const { results } = await db.prepare("SELECT * FROM experiments ORDER BY created_at DESC, id").all<ExperimentDbRow>();
  return results.map(fromRow);
}

/** Which running experiments hold any of these languages (other than `except`). */
async function busyLanguages(
  db: D1Database,
  languages: readonly string[],
  except?: string,
): Promise<{ language: string; experiment_id: string }[]> {
  const { results } = await db
    .prepare(
      `SELECT language, experiment_id FROM experiment_running WHERE language IN (SELECT value FROM json_each(?1))`,
    )
    .bind(JSON.stringify(languages))
    .all<{ language: string; experiment_id: string }>();
  return results.filter((r) => r.experiment_id !== except);
}

function lockStatements(db: D1Database, e: Pick<Experiment, "id" | "languages">): D1PreparedStatement[] {
  return e.languages.map((l) =>
    db.prepare("INSERT INTO experiment_running (language, experiment_id) VALUES (?1, ?2)").bind(l, e.id),
  );
}

async function refuseBusy(db: D1Database, languages: readonly string[], except?: string): Promise<void> {
  const busy = await busyLanguages(db, languages, except);
  if (busy.length > 0) {
    throw conflict(
      `Experiment ${busy[0]!.experiment_id} is already running for '${busy[0]!.language}'.`,
      "experiment_running",
    );
  }
}

/** Runs a batch that takes language locks; a lost race on a lock is the same 409. */
async function batchWithLocks(
  db: D1Database,
  statements: D1PreparedStatement[],
  languages: readonly string[],
  id: string,
): Promise<void> {
  try {
    await db.batch(statements);
  } catch (err) {
    if (String(err).includes("UNIQUE")) await refuseBusy(db, languages, id);
    throw err;
  }
}

export async function createExperiment(
  db: D1Database,
  input: NewExperiment,
  createdBy: string,
  now = Date.now(),
): Promise<Experiment> {
  const languages = [...new Set(input.languages)];
  for (const l of languages) {
    if (!isLanguage(l))
      throw invalidRequest(
        `Unknown language '${l}'; use a supported BCP-47 primary tag such as 'sw'.`,
        "languages",
        "unknown_language",
      );
  }
  const names = new Set(input.arms.map((a) => a.name));
  if (names.size !== input.arms.length) throw invalidRequest("Arm names must be unique.", "arms", "duplicate_arm");
  const arms: ExperimentArm[] = [];
  for (const a of input.arms) {
    let deltaId: string | null = null;
    if (a.delta !== null) {
      const adapter = await getAdapter(db, a.delta);
      if (!adapter) throw notFound(`No adapter with id '${a.delta}'.`, "adapter_not_found", "arms");
      const other = languages.find((l) => l !== adapter.language);
      if (other) {
        throw invalidRequest(
          `Adapter ${a.delta} is for '${adapter.language}', but the experiment covers '${other}'.`,
          "arms",
          "language_mismatch",
        );
      }
      deltaId = adapter.delta_id;
    }
    arms.push({ name: a.name, delta: a.delta, delta_id: deltaId, scale: a.scale, weight: a.weight });
  }
  await refuseBusy(db, languages);
  const ts = Math.floor(now / 1000);
  const experiment: Experiment = {
    id: `ex_${crypto.randomUUID().replace(/-/g, "").slice(0, 20)}`,
    name: input.name,
    languages: languages as Language[],
    arms,
    state: "running",
    promoted_arm: null,
    guardrails: input.guardrails ?? [],
    stop_reason: null,
    stopped_at: null,
    guardrails_checked_at: null,
    created_at: ts,
    created_by: createdBy,
    updated_at: ts,
  };
  await batchWithLocks(
    db,
    [
      db
        .prepare(
          "INSERT INTO experiments (id, name, languages, arms, state, guardrails, created_at, created_by, updated_at) VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?6)",
        )
        .bind(
          experiment.id,
          experiment.name,
          JSON.stringify(experiment.languages),
          JSON.stringify(arms),
          JSON.stringify(experiment.guardrails),
          ts,
          createdBy,
        ),
      ...lockStatements(db, experiment),
    ],
    languages,
    experiment.id,
  );
  forgetRunning();
  return experiment;
}

const ALLOWED: Record<"pause" | "resume" | "stop", ExperimentState[]> = {
  pause: ["running"],
  resume: ["paused"],
  stop: ["running", "paused"],
};
const TARGET: Record<"pause" | "resume" | "stop", ExperimentState> = {
  pause: "paused",
  resume: "running",
  stop: "stopped",
};

export async function changeState(
  db: D1Database,
  id: string,
  action: "pause" | "resume" | "stop",
  now = Date.now(),
): Promise<Experiment> {
  const e = await mustGet(db, id);
  if (!ALLOWED[action].includes(e.state))
    throw conflict(`Experiment ${id} is ${e.state}; it cannot ${action}.`, "invalid_state");
  const target = TARGET[action];
  const ts = Math.floor(now / 1000);
  const update =
    target === "stopped"
      ? db
          .prepare(
            "UPDATE experiments SET state = 'stopped', stop_reason = ?2, stopped_at = ?3, updated_at = ?3 WHERE id = ?1 AND state = ?4",
          )
          .bind(id, JSON.stringify({ by: "operator" } satisfies StopReason), ts, e.state)
      : db
          .prepare("UPDATE experiments SET state = ?2, updated_at = ?3 WHERE id = ?1 AND state = ?4")
          .bind(id, target, ts, e.state);
  if (target === "running") {
    await refuseBusy(db, e.languages, id);
    await batchWithLocks(db, [update, ...lockStatements(db, e)], e.languages, id);
  } else {
    await db.batch([update, db.prepare("DELETE FROM experiment_running WHERE experiment_id = ?1").bind(id)]);
  }
  forgetRunning();
  return mustGet(db, id);
}

/** Makes the arm's delta (or the base model) each language's active delta, and stops the experiment. */
export async function promoteArm(db: D1Database, id: string, armName: string, now = Date.now()): Promise<Experiment> {
  const e = await mustGet(db, id);
  const arm = e.arms.find((a) => a.name === armName);
  if (!arm) throw invalidRequest(`Experiment ${id} has no arm '${armName}'.`, "arm", "unknown_arm");
  for (const language of e.languages) await setLanguageAdapter(db, language, arm.delta, arm.scale);
  await db.batch([
    db
      .prepare(
        "UPDATE experiments SET state = 'stopped', promoted_arm = ?2, stop_reason = COALESCE(stop_reason, ?3), stopped_at = COALESCE(stopped_at, ?4), updated_at = ?4 WHERE id = ?1",
      )
      .bind(
        id,
        arm.name,
        JSON.stringify({ by: "promotion", arm: arm.name } satisfies StopReason),
        Math.floor(now / 1000),
      ),
    db.prepare("DELETE FROM experiment_running WHERE experiment_id = ?1").bind(id),
  ]);
  forgetRunning();
  return mustGet(db, id);
}

/** The running experiment for a language, cached per isolate for a few seconds; null on failure. */
async function runningExperiment(
  db: D1Database,
  language: string,
  deadline: Deadline,
  now = Date.now(),
): Promise<Experiment | null> {
  const hit = runningCache.get(language);
  if (hit && hit.until > now) return hit.experiment;
  let experiment: Experiment | null;
  try {
    const read = db
      .prepare(
        "SELECT e.* FROM experiment_running r JOIN experiments e ON e.id = r.experiment_id WHERE r.language = ?1 AND e.state = 'running'",
      )
      .bind(language)
      .first<ExperimentDbRow>();
    const row = await deadline.optional(read, () => storageTimeout("database (D1)"));
    experiment = row ? fromRow(row) : null;
  } catch (err) {
    // An experiment must never fail a request: without it, the language's active delta applies.
    console.error("reading experiments failed; serving without one", err);
    return null;
  }
  runningCache.set(language, { experiment, until: now + CACHE_MS });
  return experiment;
}

export interface Assignment {
  experimentId: string;
  arm: string;
  delta: DeltaRef | null;
  /** The experiment as this isolate knows it (for its guardrail check). */
  experiment: Experiment;
}

/** The arm a subject (the request's `user`, else its key id) gets in the language's running experiment. */
export async function assignment(
  db: D1Database,
  language: string,
  subject: string,
  deadline: Deadline,
): Promise<Assignment | null> {
  const e = await runningExperiment(db, language, deadline);
  if (!e) return null;
  const arm = assignArm(e.id, subject, e.arms);
  return {
    experimentId: e.id,
    arm: arm.name,
    delta: arm.delta_id ? { id: arm.delta_id, scale: arm.scale } : null,
    experiment: e,
  };
}

/**
 * Stops a running experiment because a guardrail fired; false when it was no longer running
 * (stopped, paused or promoted meanwhile).
 */
export async function stopForGuardrail(
  db: D1Database,
  id: string,
  reason: StopReason & { by: "guardrail" },
  now = Date.now(),
): Promise<boolean> {
  const ts = Math.floor(now / 1000);
  const [update] = await db.batch([
    db
      .prepare(
        "UPDATE experiments SET state = 'stopped', stop_reason = ?2, stopped_at = ?3, updated_at = ?3 WHERE id = ?1 AND state = 'running'",
      )
      .bind(id, JSON.stringify(reason), ts),
    // Only the lock rows of this experiment, and only once it is stopped.
    db
      .prepare(
        "DELETE FROM experiment_running WHERE experiment_id = ?1 AND EXISTS (SELECT 1 FROM experiments WHERE id = ?1 AND state = 'stopped')",
      )
      .bind(id),
  ]);
  forgetRunning();
  return (update?.meta.changes ?? 0) === 1;
}

/**
 * Claims this round of guardrail checks for the experiment: true for exactly one caller per
 * `intervalS` across isolates (a conditional write), so that isolates take turns.
 */
export async function claimGuardrailCheck(
  db: D1Database,
  id: string,
  intervalS: number,
  now = Date.now(),
): Promise<boolean> {
  const ts = Math.floor(now / 1000);
  const res = await db
    .prepare(
      "UPDATE experiments SET guardrails_checked_at = ?2 WHERE id = ?1 AND state = 'running' AND (guardrails_checked_at IS NULL OR guardrails_checked_at <= ?2 - ?3)",
    )
    .bind(id, ts, intervalS)
    .run();
  return res.meta.changes === 1;
}
