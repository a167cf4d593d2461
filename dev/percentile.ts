/**
 * The one percentile the benchmarks and docs use: nearest rank, the smallest value with at least
 * p% of the values at or below it (the same rank, ceil(p/100 n), the gateway's SQL uses for p95).
 */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1] as number;
}
