/**
 * Stop sequences over streamed text: text is released only once it cannot be the start of a stop
 * sequence, so a client never sees part of one.
 */
export class StopMatcher {
  private pending = "";

  constructor(private readonly stops: readonly string[]) {}

  /** Adds text; returns what may be released and whether a stop sequence was hit. */
  push(text: string): { release: string; stopped: boolean } {
    this.pending += text;
    let first = -1;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    if (first >= 0) {
      const release = this.pending.slice(0, first);
      this.pending = "";
      return { release, stopped: true };
    }
    // Hold back the longest tail that is a prefix of some stop sequence.
    let hold = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > hold; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    const release = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { release, stopped: false };
  }

  /** The held tail, when generation ends for another reason. */
  flush(): string {
    const rest = this.pending;
    this.pending = "";
    return rest;
  }
}
