/**
 * Guardrails are checked as traffic flows, whether or not anyone watches the results: after a chat
 * request of an experiment that declares guardrails has written its record, the same request
 * (under its own waitUntil, bounded by its own time) may evaluate them and stop the experiment.
 * Checks are spaced out twice: per isolate by a timestamp (no D1 call at all most of the time), and
 * across isolates by a conditional write in D1, so that one isolate at a time reads the aggregates.
 * Nothing here holds a promise between requests; the isolate keeps timestamps only.
 */
import { boundedD1 } from "../../bounded-bindings.js";
import { Deadline } from "../../deadline.js";
import { loadExperimentFigures, summarizeResults } from "./results.js";
import { type Experiment, type StopReason, claimGuardrailCheck, stopForGuardrail } from "./store.js";

/** How often an isolate looks at one experiment's guardrails. */
export const ISOLATE_CHECK_INTERVAL_MS = 10_000;
/** How often any isolate evaluates them (the claim in D1). */
export const CHECK_INTERVAL_S = 10;

const lastLooked = new Map<string, number>();

/**
 * The work to run after a record of `experiment` is written, or null when it declares no
 * guardrails. `db` is the real binding: the check bounds its own calls by `withinMs`.
 */
export function guardrailCheckAfterRecord(
  db: D1Database,
  experiment: Experiment,
  withinMs: number,
): (() => Promise<void>) | null {
  if (experiment.guardrails.length === 0) return null;
  return async () => {
    const now = Date.now();
    const last = lastLooked.get(experiment.id);
    if (last !== undefined && now - last < ISOLATE_CHECK_INTERVAL_MS) return;
    lastLooked.set(experiment.id, now);
    try {
      await checkGuardrails(boundedD1(db, Deadline.after(withinMs, now)), experiment, now);
    } catch (err) {
      // A guardrail check must never fail a request; the next round tries again.
      console.error("checking the experiment's guardrails failed", err);
    }
  };
}

/**
 * Evaluates the guardrails if this caller wins the round, and stops the experiment on the first
 * breach. Answers why it stopped, or null.
 */
async function checkGuardrails(db: D1Database, experiment: Experiment, now = Date.now()): Promise<StopReason | null> {
  if (!(await claimGuardrailCheck(db, experiment.id, CHECK_INTERVAL_S, now))) return null;
  const summary = summarizeResults(experiment, await loadExperimentFigures(db, experiment));
  const first = summary.guardrails.breached[0];
  if (!first) return null;
  const arm = summary.arms.find((a) => a.arm === first.arm)!;
  const control = summary.arms.find((a) => a.arm === summary.control)!;
  const reason: StopReason & { by: "guardrail" } = {
    by: "guardrail",
    arm: first.arm,
    metric: first.status.metric,
    reason: `${first.arm}: ${first.status.reason}`,
    figures: first.status,
    requests: { arm: arm.requests, control: control.requests },
  };
  return (await stopForGuardrail(db, experiment.id, reason, now)) ? reason : null;
}
