/**
 * Sticky arm assignment: the same experiment and subject (the request's `user`, else the API key id)
 * always land in the same arm, whatever the retries, fallbacks or isolate. Pure.
 */

/** FNV-1a over the UTF-16 code units, then murmur3's finalizer to spread nearby inputs. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A point in [0, totalWeight) for this experiment and subject. */
export function assignmentPoint(experimentId: string, subject: string, totalWeight: number): number {
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
