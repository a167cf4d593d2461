/**
 * The registry as the admin console shows it: each language with its active delta, the previous
 * one kept for rollback and that delta's recorded evaluation figures; each adapter with where it
 * came from (uploaded, or registered from a Lens job) and where it is in use. A few joined queries
 * over small tables (languages, adapters, jobs, experiments).
 */
import type { ExperimentState } from "../experiments/store.js";
import type { LanguageDeltaRow } from "../deltas/language-adapters.js";

interface DeltaSummary {
  adapter_id: string | null;
  delta_id: string;
  scale: number;
  /** From the adapter's manifest, when the adapter row still exists. */
  kind: string | null;
  metrics: Record<string, number> | null;
  created_at: number | null;
}

export interface LanguageEntry {
  language: string;
  active: DeltaSummary | null;
  previous: DeltaSummary | null;
  updated_at: number | null;
  /** The experiment running for the language: its arms replace the active delta meanwhile. */
  experiment: { id: string; name: string; arms: string[] } | null;
}

type AdapterUse =
  | { as: "active" | "previous"; language: string; scale: number }
  | { as: "arm"; experiment_id: string; experiment_name: string; state: ExperimentState; arm: string; scale: number };

export interface AdapterEntry {
  id: string;
  language: string;
  delta_id: string;
  kind: string;
  layers: number[];
  rank: number;
  size: number;
  sha256: string;
  base_model: { id: string; fingerprint: string };
  created_at: number;
  created_by: string;
  source: { kind: "upload" } | { kind: "lens_job"; job_id: string; job_kind: string };
  metrics: Record<string, number> | null;
  description: string | null;
  in_use: AdapterUse[];
}

interface LanguageRow extends LanguageDeltaRow {
  active_kind: string | null;
  active_metrics: string | null;
  active_created_at: number | null;
  previous_kind: string | null;
  previous_metrics: string | null;
  previous_created_at: number | null;
}

interface AdapterRow {
  id: string;
  language: string;
  delta_id: string;
  sha256: string;
  size: number;
  created_at: number;
  created_by: string;
  kind: string;
  layers: string;
  rank: number;
  base_model_id: string;
  fingerprint: string;
  metrics: string | null;
  description: string | null;
  job_id: string | null;
  job_kind: string | null;
}

interface ArmRow {
  experiment_id: string;
  experiment_name: string;
  state: ExperimentState;
  languages: string;
  running: number;
  arm: string;
  adapter_id: string | null;
  scale: number;
}

const metricsOf = (json: string | null): Record<string, number> | null =>
  json === null ? null : (JSON.parse(json) as Record<string, number>);

export async function readRegistry(db: D1Database): Promise<{ languages: LanguageEntry[]; adapters: AdapterEntry[] }> {
  const [languages, adapters, arms] = await db.batch<unknown>([
    db.prepare(
      `SELECT l.language, l.delta_id, l.adapter_id, l.scale, l.previous_delta_id, l.previous_adapter_id, l.previous_scale, l.updated_at,
         json_extract(a.manifest, '$.kind') AS active_kind, json_extract(a.manifest, '$.metrics') AS active_metrics, a.created_at AS active_created_at,
         json_extract(p.manifest, '$.kind') AS previous_kind, json_extract(p.manifest, '$.metrics') AS previous_metrics, p.created_at AS previous_created_at
       FROM language_deltas l
       LEFT JOIN adapters a ON a.id = l.adapter_id
       LEFT JOIN adapters p ON p.id = l.previous_adapter_id
       ORDER BY l.language`,
    ),
    db.prepare(
      `SELECT a.id, a.language, a.delta_id, a.sha256, a.size, a.created_at, a.created_by,
         json_extract(a.manifest, '$.kind') AS kind, json_extract(a.manifest, '$.layers') AS layers, json_extract(a.manifest, '$.rank') AS rank,
         json_extract(a.manifest, '$.base_model.id') AS base_model_id, json_extract(a.manifest, '$.base_model.fingerprint') AS fingerprint,
         json_extract(a.manifest, '$.metrics') AS metrics, json_extract(a.manifest, '$.description') AS description,
         j.id AS job_id, j.kind AS job_kind
       FROM adapters a LEFT JOIN lens_jobs j ON j.adapter_id = a.id
       ORDER BY a.created_at DESC, a.id`,
    ),
    db.prepare(
      `SELECT e.id AS experiment_id, e.name AS experiment_name, e.state, e.languages,
         EXISTS (SELECT 1 FROM experiment_running r WHERE r.experiment_id = e.id) AS running,
         json_extract(a.value, '$.name') AS arm, json_extract(a.value, '$.delta') AS adapter_id, json_extract(a.value, '$.scale') AS scale
       FROM experiments e, json_each(e.arms) a
       WHERE e.state != 'stopped'
       ORDER BY e.created_at DESC, e.id, a.key`,
    ),
  ]);
  const languageRows = (languages!.results ?? []) as LanguageRow[];
  const adapterRows = (adapters!.results ?? []) as AdapterRow[];
  const armRows = (arms!.results ?? []) as ArmRow[];

  const runningByLanguage = new Map<string, { id: string; name: string; arms: string[] }>();
  for (const r of armRows) {
    if (!r.running) continue;
    for (const language of JSON.parse(r.languages) as string[]) {
      const entry = runningByLanguage.get(language) ?? { id: r.experiment_id, name: r.experiment_name, arms: [] };
      if (entry.id === r.experiment_id) entry.arms.push(r.arm);
      runningByLanguage.set(language, entry);
    }
  }
  const entries: LanguageEntry[] = languageRows.map((l) => ({
    language: l.language,
    active: {
      adapter_id: l.adapter_id,
      delta_id: l.delta_id,
      scale: l.scale,
      kind: l.active_kind,
      metrics: metricsOf(l.active_metrics),
      created_at: l.active_created_at,
    },
    previous:
      l.previous_delta_id === null
        ? null
        : {
            adapter_id: l.previous_adapter_id,
            delta_id: l.previous_delta_id,
            scale: l.previous_scale ?? 1,
            kind: l.previous_kind,
            metrics: metricsOf(l.previous_metrics),
            created_at: l.previous_created_at,
          },
    updated_at: l.updated_at,
    experiment: runningByLanguage.get(l.language) ?? null,
  }));
  // Languages served by the base model but under an experiment are shown too.
  for (const [language, experiment] of runningByLanguage) {
    if (!entries.some((e) => e.language === language))
      entries.push({ language, active: null, previous: null, updated_at: null, experiment });
  }
  entries.sort((a, b) => a.language.localeCompare(b.language));

  const uses = new Map<string, AdapterUse[]>();
  const use = (id: string | null, u: AdapterUse) => {
    if (id === null) return;
    uses.set(id, [...(uses.get(id) ?? []), u]);
  };
  for (const l of languageRows) {
    use(l.adapter_id, { as: "active", language: l.language, scale: l.scale });
    use(l.previous_adapter_id, { as: "previous", language: l.language, scale: l.previous_scale ?? 1 });
  }
  for (const r of armRows) {
    use(r.adapter_id, {
      as: "arm",
      experiment_id: r.experiment_id,
      experiment_name: r.experiment_name,
      state: r.state,
      arm: r.arm,
      scale: r.scale,
    });
  }
  return {
    languages: entries,
    adapters: adapterRows.map((a) => ({
      id: a.id,
      language: a.language,
      delta_id: a.delta_id,
      kind: a.kind,
      layers: JSON.parse(a.layers) as number[],
      rank: a.rank,
      size: a.size,
      sha256: a.sha256,
      base_model: { id: a.base_model_id, fingerprint: a.fingerprint },
      created_at: a.created_at,
      created_by: a.created_by,
      source: a.job_id ? { kind: "lens_job", job_id: a.job_id, job_kind: a.job_kind ?? "train" } : { kind: "upload" },
      metrics: metricsOf(a.metrics),
      description: a.description,
      in_use: uses.get(a.id) ?? [],
    })),
  };
}
