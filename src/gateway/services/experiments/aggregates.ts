/**
 * An experiment's figures as grouped SQL queries over its request records: counts and sums per
 * arm in one query, and latencies at chosen ranks (p95, the guardrail's bounds) by walking the
 * covering index in order. Nothing reads the rows themselves into the isolate
 * (migrations/0008_experiment_guardrails.sql holds the index).
 */

export interface ArmAggregate {
  arm: string;
  requests: number;
  /** Requests with a status other than 200 or a stream that ended in an error. */
  errors: number;
  /** Requests whose reply language could be compared with the asked one, and those that matched. */
  measured: number;
  matched: number;
  /** Requests with feedback, and the mean score among them. */
  feedback: number;
  feedback_mean: number | null;
  latency_mean: number | null;
}

const EMPTY = (arm: string): ArmAggregate => ({
  arm,
  requests: 0,
  errors: 0,
  measured: 0,
  matched: 0,
  feedback: 0,
  feedback_mean: null,
  latency_mean: null,
});

/** Per-arm counts and sums for the experiment's arms (an arm without records gets zeros). */
export async function readArmAggregates(
  db: D1Database,
  experimentId: string,
  arms: readonly string[],
): Promise<ArmAggregate[]> {
  const { results } = await db
    .prepare(
      `SELECT arm,
         COUNT(*) AS requests,
         SUM(status <> 200 OR finish_reason = 'error') AS errors,
         SUM(language_match IS NOT NULL) AS measured,
         SUM(language_match = 1) AS matched,
         SUM(feedback_score IS NOT NULL) AS feedback,
         AVG(feedback_score) AS feedback_mean,
         AVG(total_ms) AS latency_mean
       FROM requests WHERE experiment_id = ?1 AND arm IS NOT NULL GROUP BY arm`,
    )
    .bind(experimentId)
    .all<ArmAggregate>();
  const byArm = new Map(results.map((r) => [r.arm, r]));
  return arms.map((arm) => {
    const r = byArm.get(arm);
    return r
      ? { ...r, errors: r.errors ?? 0, measured: r.measured ?? 0, matched: r.matched ?? 0, feedback: r.feedback ?? 0 }
      : EMPTY(arm);
  });
}

/**
 * total_ms at 1-based ranks within each arm (ascending): one indexed ORDER BY ... LIMIT 1 OFFSET
 * statement per rank, in one batch. Ranks beyond an arm's count are simply absent.
 */
export async function readLatencyRanks(
  db: D1Database,
  experimentId: string,
  wanted: ReadonlyMap<string, readonly number[]>,
): Promise<Map<string, Map<number, number>>> {
  const asks: { arm: string; rank: number }[] = [];
  for (const [arm, ranks] of wanted) for (const rank of new Set(ranks)) if (rank >= 1) asks.push({ arm, rank });
  const out = new Map<string, Map<number, number>>([...wanted.keys()].map((arm) => [arm, new Map()]));
  if (asks.length === 0) return out;
  const statement = db.prepare(
    "SELECT total_ms FROM requests WHERE experiment_id = ?1 AND arm = ?2 ORDER BY total_ms LIMIT 1 OFFSET ?3",
  );
  const answers = await db.batch<{ total_ms: number }>(
    asks.map((a) => statement.bind(experimentId, a.arm, a.rank - 1)),
  );
  answers.forEach((answer, i) => {
    const row = answer.results[0];
    if (row) out.get(asks[i]!.arm)!.set(asks[i]!.rank, row.total_ms);
  });
  return out;
}
