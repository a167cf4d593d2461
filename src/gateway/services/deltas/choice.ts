/**
 * Which delta a chat request asks the backend for: none with `x-lens-mode: off` or an undetermined
 * language; else the arm's delta when the language has a running experiment (null: the base arm);
 * else the language's active delta.
 */
import type { DeltaRef } from "../../../protocol/backend.js";
import type { LanguageOrUnd } from "../../../protocol/languages.js";
import type { Deadline } from "../../deadline.js";
import type { LensMode } from "../../language/choose.js";
import { type Assignment, assignment } from "../experiments/store.js";
import { activeDelta } from "./active-deltas.js";

export interface DeltaChoice {
  delta: DeltaRef | null;
  assigned: Assignment | null;
}

export async function chooseDelta(
  db: D1Database,
  language: LanguageOrUnd,
  mode: LensMode,
  subject: string,
  deadline: Deadline,
): Promise<DeltaChoice> {
  if (mode === "off" || language === "und") return { delta: null, assigned: null };
  const assigned = await assignment(db, language, subject, deadline);
  if (assigned) return { delta: assigned.delta, assigned };
  return { delta: await activeDelta(db, language, deadline), assigned: null };
}
