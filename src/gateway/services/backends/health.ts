/**
 * Per-isolate memory of backends that just refused a connection, so that the next requests try
 * a live one first instead of paying for the same failure again.
 */
const DOWN_FOR_MS = 5_000;
const downUntil = new Map<string, number>();

export function markDown(url: string, now = Date.now()): void {
  downUntil.set(url, now + DOWN_FOR_MS);
}

export function markUp(url: string): void {
  downUntil.delete(url);
}

export function isDown(url: string, now = Date.now()): boolean {
  const until = downUntil.get(url);
  if (until === undefined) return false;
  if (until <= now) {
    downUntil.delete(url);
    return false;
  }
  return true;
}
