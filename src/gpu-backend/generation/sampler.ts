/** Next-token choice: greedy, or temperature + nucleus (top_p) sampling from a seeded generator. */

/** mulberry32: small, fast, and the same sequence for the same seed on every platform. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function argmax(logits: ArrayLike<number>, offset = 0, length = logits.length - offset): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < length; i++) {
    const v = logits[offset + i] as number;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

export interface SamplingChoice {
  temperature: number;
  topP: number;
  random: () => number;
}

/** Samples one token from `logits[offset .. offset+length)`. */
export function sampleToken(logits: ArrayLike<number>, offset: number, length: number, s: SamplingChoice): number {
  if (s.temperature <= 0 || s.topP <= 0) return argmax(logits, offset, length);
  const probs = new Float64Array(length);
  let max = -Infinity;
  for (let i = 0; i < length; i++) max = Math.max(max, logits[offset + i] as number);
  let sum = 0;
  for (let i = 0; i < length; i++) {
    const p = Math.exp(((logits[offset + i] as number) - max) / s.temperature);
    probs[i] = p;
    sum += p;
  }
  if (s.topP >= 1) {
    let r = s.random() * sum;
    for (let i = 0; i < length; i++) {
      r -= probs[i] as number;
      if (r <= 0) return i;
    }
    return length - 1;
  }
  // Nucleus: the smallest set of most likely tokens whose mass reaches top_p.
  const order = Array.from({ length }, (_, i) => i).sort((a, b) => (probs[b] as number) - (probs[a] as number));
  const limit = s.topP * sum;
  let kept = 0;
  let mass = 0;
  while (kept < length && mass < limit) mass += probs[order[kept++] as number] as number;
  let r = s.random() * mass;
  for (let k = 0; k < kept; k++) {
    r -= probs[order[k] as number] as number;
    if (r <= 0) return order[k] as number;
  }
  return order[kept - 1] as number;
}
