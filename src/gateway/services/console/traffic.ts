/**
 * Traffic per language and hour, base model vs edited (a delta applied), for the admin console:
 * one grouped query over the request records, p95 included, answered from the
 * (hour, language, edited, total_ms, ...) index of migrations/0008_experiment_guardrails.sql.
 */

export interface TrafficPoint {
  /** Start of the hour, unix seconds. */
  hour: number;
  language: string;
  /** A delta was applied (false: the base model answered). */
  edited: boolean;
  requests: number;
  errors: number;
  /** Requests whose reply language could be compared with the asked one, and those that matched. */
  measured: number;
  matched: number;
  fidelity: number | null;
  mean_ms: number;
  /** Nearest-rank 95th percentile of total_ms. */
  p95_ms: number;
}

interface DbPoint {
  hour: number;
  language: string;
  edited: number;
  requests: number;
  errors: number;
  measured: number;
  matched: number;
  mean_ms: number;
  p95_ms: number;
}

export const MAX_TRAFFIC_HOURS = 24 * 7;

/**
 * The last `hours` hours (the current one included). The p95 is the row whose rank within its
 * group is ceil(0.95 n): the ranks come from a window over rows the index already sorts, joined
 * with the grouped counts, so no row leaves D1.
 */
export async function hourlyTraffic(
  db: D1Database,
  hours: number,
  now = Date.now(),
): Promise<{ since: number; until: number; points: TrafficPoint[] }> {
  const currentHour = Math.floor(now / 3_600_000);
  const firstHour = currentHour - hours + 1;
  const { results } = await db
    .prepare(
      `WITH grouped AS (
         SELECT created_at / 3600 AS hour, language, delta_id IS NOT NULL AS edited,
           COUNT(*) AS requests,
           SUM(status <> 200 OR finish_reason = 'error') AS errors,
           SUM(language_match IS NOT NULL) AS measured,
           SUM(language_match = 1) AS matched,
           AVG(total_ms) AS mean_ms,
           (COUNT(*) * 95 + 99) / 100 AS rank95
         FROM requests WHERE created_at / 3600 >= ?1
         GROUP BY 1, 2, 3
       ), ranked AS (
         SELECT created_at / 3600 AS hour, language, delta_id IS NOT NULL AS edited, total_ms,
           ROW_NUMBER() OVER (PARTITION BY created_at / 3600, language, delta_id IS NOT NULL ORDER BY total_ms) AS rn
         FROM requests WHERE created_at / 3600 >= ?1
       )
       SELECT g.hour, g.language, g.edited, g.requests, g.errors, g.measured, g.matched, g.mean_ms, r.total_ms AS p95_ms
       FROM grouped g JOIN ranked r ON r.hour = g.hour AND r.language = g.language AND r.edited = g.edited AND r.rn = g.rank95
       ORDER BY g.language, g.hour, g.edited`,
    )
    .bind(firstHour)
    .all<DbPoint>();
  return {
    since: firstHour * 3600,
    until: (currentHour + 1) * 3600,
    points: results.map((r) => ({
      hour: r.hour * 3600,
      language: r.language,
      edited: r.edited === 1,
      requests: r.requests,
      errors: r.errors ?? 0,
      measured: r.measured ?? 0,
      matched: r.matched ?? 0,
      fidelity: r.measured ? (r.matched ?? 0) / r.measured : null,
      mean_ms: r.mean_ms,
      p95_ms: r.p95_ms,
    })),
  };
}
