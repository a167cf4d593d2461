/**
 * Adam with bias correction and optional decoupled weight decay (AdamW), float64, over a fixed list of
 * parameter arrays, plus the learning-rate schedules training uses. Deterministic: plain arithmetic in
 * a fixed order, so the same gradients give the same bits.
 */

export interface AdamOptions {
  beta1?: number;
  beta2?: number;
  /** Added to sqrt(v_hat); must stay well below the gradients' typical size. */
  eps?: number;
  /** Decoupled weight decay per unit learning rate (AdamW); 0 = plain Adam. */
  weightDecay?: number;
}

export const ADAM_DEFAULTS: Required<AdamOptions> = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

export class Adam {
  private readonly m: Float64Array[];
  private readonly v: Float64Array[];
  private t = 0;
  readonly options: Required<AdamOptions>;

  constructor(sizes: readonly number[], options: AdamOptions = {}) {
    this.options = { ...ADAM_DEFAULTS, ...options };
    const { beta1, beta2, eps, weightDecay } = this.options;
    if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1))
      throw new RangeError(`betas must be in [0, 1), got ${beta1}, ${beta2}`);
    if (!(eps > 0) || !(weightDecay >= 0))
      throw new RangeError(`eps must be > 0 and weightDecay >= 0, got ${eps}, ${weightDecay}`);
    this.m = sizes.map((n) => new Float64Array(n));
    this.v = sizes.map((n) => new Float64Array(n));
  }

  /** Steps taken so far. */
  get steps(): number {
    return this.t;
  }

  /** One update of `params` (in place) from `grads`, at learning rate `lr`. */
  step(params: readonly Float64Array[], grads: readonly Float64Array[], lr: number): void {
    if (params.length !== this.m.length || grads.length !== this.m.length)
      throw new RangeError("Adam.step: parameter count changed");
    const { beta1, beta2, eps, weightDecay } = this.options;
    this.t++;
    const c1 = 1 - beta1 ** this.t;
    const c2 = 1 - beta2 ** this.t;
    params.forEach((p, k) => {
      const g = grads[k]!;
      const m = this.m[k]!;
      const v = this.v[k]!;
      if (p.length !== m.length || g.length !== m.length) throw new RangeError(`Adam.step: array ${k} changed size`);
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        m[i] = beta1 * m[i]! + (1 - beta1) * gi;
        v[i] = beta2 * v[i]! + (1 - beta2) * gi * gi;
        const update = m[i]! / c1 / (Math.sqrt(v[i]! / c2) + eps);
        p[i] = p[i]! - lr * (update + weightDecay * p[i]!);
      }
    });
  }
}

export type LrSchedule = "constant" | "cosine";

/**
 * Learning rate for step `step` (0-based) of `steps`. "cosine" falls from `lr` at step 0 towards 0 at
 * the end: a constant rate leaves Adam circling the minimum at about `lr` per parameter, the decay lets
 * it settle, which matters with the few, full-batch steps training takes here.
 */
export function learningRate(schedule: LrSchedule, lr: number, step: number, steps: number): number {
  if (schedule === "constant") return lr;
  return 0.5 * lr * (1 + Math.cos((Math.PI * step) / steps));
}
