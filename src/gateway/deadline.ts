/**
 * Every wait on a request's path is bounded. Until its answer starts, all of a request's waits
 * (D1, R2, Durable Objects, the backends) share one deadline derived from BACKEND_TIMEOUT_MS, so
 * that the request answers by then, at the latest, with a 504 or a 503 and `retry-after`. Once
 * the answer has started (a stream flowing, a record to write) each further wait gets the whole
 * bound on its own: the request's time was spent on the answer, not lost.
 */
import { GatewayError } from "./errors.js";

/** A request's deadline; `budget()` is how long its next wait may take. */
export class Deadline {
  private started = false;

  constructor(
    /** Date.now() by which the answer must have started. */
    readonly at: number,
    /** The bound of each wait once the answer has started. */
    readonly eachMs: number,
  ) {}

  static after(ms: number, now = Date.now()): Deadline {
    return new Deadline(now + ms, ms);
  }

  /** Milliseconds the next wait may take (0: none left). */
  budget(now = Date.now()): number {
    return this.started ? this.eachMs : Math.max(0, this.at - now);
  }

  /** The answer has started: later waits are bounded one by one. */
  answerStarted(): void {
    this.started = true;
  }

  /** Settles as `p` does, or rejects with `onTimeout()` when the budget runs out first. */
  race<T>(p: PromiseLike<T>, onTimeout: () => Error): Promise<T> {
    return within(p, this.budget(), onTimeout);
  }

  /**
   * For a wait the request can do without (it then serves the base model, or admits without a
   * limit): at most a quarter of the bound, so that a hung dependency leaves time to answer.
   */
  optional<T>(p: PromiseLike<T>, onTimeout: () => Error): Promise<T> {
    return within(p, Math.min(this.budget(), this.eachMs / 4), onTimeout);
  }
}

/** Settles as `p` does, or rejects with `onTimeout()` after `ms`; `p` settling later is ignored. */
export function within<T>(p: PromiseLike<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      reject(onTimeout());
    }, ms);
    p.then(
      (value) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** D1, R2 or a Durable Object did not answer within the request's deadline. */
export const storageTimeout = (what: string) =>
  new GatewayError(
    503,
    "server_error",
    `The gateway's ${what} did not answer in time; try again shortly.`,
    "storage_timeout",
    null,
    { "retry-after": "1" },
  );
