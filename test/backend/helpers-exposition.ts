/**
 * A strict reader of the Prometheus text exposition format (0.0.4), for checking what GET /metrics
 * serves: every line a comment or one sample, every sample in a family declared by `# TYPE`, label
 * values escaped, histogram series consistent.
 */
type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  type: MetricType;
  help: string | null;
  samples: Sample[];
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL = `([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\\\n]|\\\\["\\\\n])*)"`;
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(${LABEL}(?:,${LABEL})*)?\\})? (\\S+)$`);
const TYPES: ReadonlySet<string> = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

const unescapeLabel = (v: string) => v.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));

function parseValue(raw: string, line: string): number {
  if (raw === "+Inf") return Infinity;
  if (raw === "-Inf") return -Infinity;
  if (raw === "NaN") return Number.NaN;
  if (!/^-?[0-9.]+(e[+-]?[0-9]+)?$/.test(raw)) throw new Error(`bad value in ${JSON.stringify(line)}`);
  return Number(raw);
}

/** The family a sample belongs to: itself, or for a histogram's series the name without its suffix. */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  const own = families.get(name);
  if (own) return own;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  const base = m ? families.get(m[1]!) : undefined;
  return base && (base.type === "histogram" || (base.type === "summary" && m![2] !== "bucket")) ? base : undefined;
}

/** Parses the page; throws on a malformed line, a sample before its `# TYPE`, or a family typed twice. */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const help = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("#")) {
      const typed = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (typed) {
        const [, name, type] = typed;
        if (!TYPES.has(type!)) throw new Error(`unknown type in ${JSON.stringify(line)}`);
        if (families.has(name!)) throw new Error(`${name} is typed twice`);
        families.set(name!, { type: type as MetricType, help: help.get(name!) ?? null, samples: [] });
        continue;
      }
      const helped = /^# HELP (\S+) (.*)$/.exec(line);
      if (helped) help.set(helped[1]!, helped[2]!);
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    const name = m[1]!;
    const labels: Record<string, string> = {};
    if (m[2] !== undefined)
      for (const [, k, v] of m[2].matchAll(new RegExp(LABEL, "g"))) labels[k!] = unescapeLabel(v!);
    const family = familyOf(name, families);
    if (!family) throw new Error(`sample ${name} has no # TYPE before it`);
    family.samples.push({ name, labels, value: parseValue(m[m.length - 1]!, line) });
  }
  return families;
}

/** Checks a histogram family: ascending `le` ending in +Inf, cumulative counts, +Inf bucket = _count. Returns its count and sum. */
export function checkHistogram(
  families: Map<string, Family>,
  name: string,
): { count: number; sum: number; buckets: Array<[number, number]> } {
  const family = families.get(name);
  if (family?.type !== "histogram") throw new Error(`${name} is not a histogram`);
  const buckets = family.samples
    .filter((s) => s.name === `${name}_bucket`)
    .map((s): [number, number] => [parseValue(s.labels["le"] ?? "", name), s.value]);
  const sum = family.samples.find((s) => s.name === `${name}_sum`)?.value;
  const count = family.samples.find((s) => s.name === `${name}_count`)?.value;
  if (sum === undefined || count === undefined) throw new Error(`${name} has no _sum or _count`);
  if (buckets.length === 0 || buckets.at(-1)![0] !== Infinity) throw new Error(`${name}'s last bucket is not +Inf`);
  for (let i = 1; i < buckets.length; i++) {
    if (!(buckets[i]![0] > buckets[i - 1]![0])) throw new Error(`${name}'s buckets are not in ascending order`);
    if (buckets[i]![1] < buckets[i - 1]![1]) throw new Error(`${name}'s bucket counts are not cumulative`);
  }
  if (buckets.at(-1)![1] !== count)
    throw new Error(`${name}: the +Inf bucket (${buckets.at(-1)![1]}) differs from _count (${count})`);
  if (count === 0 && sum !== 0) throw new Error(`${name}: no observations but a sum of ${sum}`);
  return { count, sum, buckets };
}

/** The sum of a family's samples whose labels include `where`. */
export function total(families: Map<string, Family>, name: string, where: Record<string, string> = {}): number {
  const family = families.get(name);
  if (!family) throw new Error(`no family ${name}`);
  return family.samples
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}
