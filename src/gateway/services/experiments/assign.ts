/**
 * Sticky arm assignment: the same experiment and subject (the request's `user`, else the API key id)
 * always land in the same arm, whatever the retries, fallbacks or isolate. Pure.
 */
import { hash32 } from "../hash.js";

/** A point in [0, totalWeight) for this experiment and subject. */
function assignmentPoint(experimentId: string, subject: string, totalWeight: number): number {
  return (hash32(`${experimentId}\u0000${subject}`) / 2 ** 32) * totalWeight;
}

/** The arm whose weight interval holds the subject's point (arms in their listed order). */
export function assignArm<A extends { weight: number }>(experimentId: string, subject: string, arms: readonly A[]): A {
  if (arms.length === 0) throw new Error("an experiment needs arms");
  const total = arms.reduce((sum, a) => sum + a.weight, 0);
  const point = assignmentPoint(experimentId, subject, total);
  let upTo = 0;
  for (const arm of arms) {
    upTo += arm.weight;
    if (point < upTo) return arm;
  }
  return arms[arms.length - 1]!;
}
