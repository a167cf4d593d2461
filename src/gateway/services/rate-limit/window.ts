/**
 * A sliding one-minute window in one-second buckets: what a key spent (requests or tokens) over
 * the last 60 s, and how long until enough of it ages out. Fixed size and O(60) at worst, so a
 * limiter holding thousands of keys' windows stays small.
 */
const WINDOW_S = 60;

export class SlidingWindow {
  private readonly counts = new Float64Array(WINDOW_S);
  /** The second each bucket holds; a bucket from an older second counts as empty. */
  private readonly seconds = new Float64Array(WINDOW_S).fill(-Infinity);

  add(amount: number, nowMs: number): void {
    if (!(amount > 0)) return;
    const second = Math.floor(nowMs / 1000);
    const i = second % WINDOW_S;
    if (this.seconds[i] !== second) {
      this.seconds[i] = second;
      this.counts[i] = 0;
    }
    this.counts[i] = (this.counts[i] ?? 0) + amount;
  }

  /** Spent over the last WINDOW_S seconds, this one included. */
  used(nowMs: number): number {
    const second = Math.floor(nowMs / 1000);
    let sum = 0;
    for (let i = 0; i < WINDOW_S; i++) {
      const s = this.seconds[i] ?? -Infinity;
      if (s > second - WINDOW_S && s <= second) sum += this.counts[i] ?? 0;
    }
    return sum;
  }

  /**
   * Whole seconds until the spend falls below `limit` (so one more request fits); 0 when it
   * already is. At least 1 otherwise, as `retry-after` needs.
   */
  secondsUntilBelow(limit: number, nowMs: number): number {
    let excess = this.used(nowMs) - limit;
    if (excess < 0) return 0;
    const second = Math.floor(nowMs / 1000);
    // Oldest live bucket first: each second that passes drops the bucket that leaves the window.
    for (let age = WINDOW_S - 1; age >= 0; age--) {
      const s = second - age;
      const i = ((s % WINDOW_S) + WINDOW_S) % WINDOW_S;
      if (this.seconds[i] !== s) continue;
      excess -= this.counts[i] ?? 0;
      // That bucket leaves the window at second s + WINDOW_S.
      if (excess < 0) return Math.max(1, s + WINDOW_S - second);
    }
    return WINDOW_S;
  }
}
