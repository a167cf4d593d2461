/**
 * `npm run bench:lens`: time of Lens jobs per stage on the embedded model, through the same job runner
 * the backend and the CLI use (records and artifacts written to a temporary jobs folder, removed at
 * the end).
 *
 *   1. The goal (docs/design.md): probe 12 languages x 200 prompts (held-out probe split, parallel rows) at the top
 *      two layers, then train an adapter for one language (200 train pairs, default settings), then for
 *      all 11 targets; target: probe + train under 2 minutes on this CPU.
 *   2. How the probe grows with prompts per language (50 / 100 / 200, one layer) and with layers
 *      (1 / 2 / 4, 200 prompts); how training grows with prompts (50 / 100 / 200 pairs).
 *
 * Stages: session (building the hooked graph and the onnxruntime session), collect (forward passes for
 * last-token states), math (means, SVDs, subspaces), states (training's all-position states), train (the
 * Adam steps), write (encoding plus the atomic writes of tensors, manifest and record). One run of each
 * (no repeats: the whole run stays within a few minutes on 2 cores); onnxruntime gets one thread, as jobs
 * do on the backend by default (the generator keeps the rest).
 *
 * Options: --model <dir> (default models/lens-tiny-chat), --threads <n> (default 1), --quick (fewer
 * scaling points).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { LANGUAGES } from "../../src/protocol/languages.js";
import type { LensJobRecord, LensJobRequestInput } from "../../src/protocol/lens-jobs.js";
import { LensJobRunner } from "../../src/gpu-backend/lens/jobs/runner.js";
import { ChatTokenizer } from "../../src/gpu-backend/model/chat-tokenizer.js";
import { modelFingerprint } from "../../src/gpu-backend/model/fingerprint.js";
import { readModelDir } from "../../src/gpu-backend/model/model-dir.js";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "models/lens-tiny-chat" },
    threads: { type: "string", default: "1" },
    quick: { type: "boolean", default: false },
  },
});

const LANGS = LANGUAGES.filter((l) => l !== "sw"); // 12 languages; Swahili has ~19 parallel rows
const info = readModelDir(values.model);
const tokenizer = ChatTokenizer.fromDir(info.dir);
const fingerprint = await modelFingerprint(info.onnxPath);
const threads = Number(values.threads);
const work = mkdtempSync(join(tmpdir(), "bench-lens-"));
const runner = new LensJobRunner(
  { info, tokenizer, fingerprint },
  { dir: join(work, "jobs"), sessionOptions: { intraOpNumThreads: threads, interOpNumThreads: 1 } },
);

interface Row {
  what: string;
  session?: number;
  collect?: number;
  math?: number;
  states?: number;
  train?: number;
  write: number;
  total: number;
}
const rows: Row[] = [];

async function run(request: LensJobRequestInput): Promise<{ record: LensJobRecord; wallMs: number }> {
  const t = performance.now();
  const { id } = runner.submit(request);
  const record = await runner.wait(id);
  const wallMs = performance.now() - t;
  if (record.state !== "succeeded") throw new Error(`${request.kind} job ${record.state}: ${record.error?.message}`);
  return { record, wallMs };
}
const timings = (r: LensJobRecord) => (r.result?.["timings_ms"] ?? {}) as Record<string, number>;

async function probeRow(
  what: string,
  languages: readonly string[],
  layers: number[],
  n: number,
): Promise<LensJobRecord> {
  const { record, wallMs } = await run({ kind: "probe", languages: [...languages] as never, layers, per_language: n });
  const t = timings(record);
  rows.push({
    what,
    session: t["session"]!,
    collect: t["collect"]!,
    math: t["math"]!,
    write: (t["encode"] ?? 0) + t["write"]!,
    total: wallMs,
  });
  return record;
}

async function trainRow(what: string, probe: string, language: string, n: number): Promise<number> {
  const { record, wallMs } = await run({ kind: "train", probe, language: language as never, per_language: n });
  const t = timings(record);
  rows.push({ what, states: t["states"]!, train: t["train"]!, write: (t["encode"] ?? 0) + t["write"]!, total: wallMs });
  return wallMs;
}

const top2 = [info.numLayers - 2, info.numLayers - 1];
const started = performance.now();
try {
  console.log(
    `Lens jobs on ${info.id} (d = ${info.hiddenSize}, ${info.numLayers} layers), ${cpus().length} CPUs (${cpus()[0]?.model ?? "?"}), node ${process.version}, onnxruntime threads ${threads}\n`,
  );

  // 1. The goal.
  const main = await probeRow(`probe 12 langs x 200, layers ${top2.join(",")}`, LANGS, top2, 200);
  const probeMs = rows[0]!.total;
  const probeId = main.id;
  const oneTrain = await trainRow("train es, 200 pairs, 200 steps", probeId, "es", 200);
  let allTrain = oneTrain;
  const targets = LANGS.filter((l) => l !== "en" && l !== "es");
  const before = rows.length;
  for (const lang of targets) allTrain += await trainRow(`train ${lang}`, probeId, lang, 200);
  // Fold the per-language rows of the other 10 targets into one.
  const extra = rows.splice(before);
  rows.push({
    what: `train the other ${targets.length} targets (sum)`,
    states: extra.reduce((s, r) => s + r.states!, 0),
    train: extra.reduce((s, r) => s + r.train!, 0),
    write: extra.reduce((s, r) => s + r.write, 0),
    total: extra.reduce((s, r) => s + r.total, 0),
  });

  // 2. Scaling.
  const counts = values.quick ? [50, 200] : [50, 100, 200];
  const layerSets = values.quick
    ? [[info.numLayers - 1], Array.from({ length: info.numLayers }, (_, l) => l)]
    : [[info.numLayers - 1], top2, Array.from({ length: info.numLayers }, (_, l) => l)];
  for (const n of counts) await probeRow(`probe 12 langs x ${n}, 1 layer`, LANGS, [info.numLayers - 1], n);
  for (const ls of layerSets)
    if (ls.length > 1) await probeRow(`probe 12 langs x 200, ${ls.length} layers`, LANGS, ls, 200);
  for (const n of counts) if (n !== 200) await trainRow(`train es, ${n} pairs, 200 steps`, probeId, "es", n);

  const f = (x: number | undefined) =>
    x === undefined ? "" : x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${x.toFixed(0)} ms`;
  const header = ["job", "session", "collect", "math", "states", "train", "write", "total"];
  const table = rows.map((r) => [
    r.what,
    f(r.session),
    f(r.collect),
    f(r.math),
    f(r.states),
    f(r.train),
    f(r.write),
    f(r.total),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => t[i]!.length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : `${"-".repeat(w + 1)}:`)).join("|")}|`);
  for (const t of table) console.log(line(t));
  const goal = 120_000;
  console.log(
    `\nprobe + train one language: ${(probeMs + oneTrain) / 1000 < 100 ? ((probeMs + oneTrain) / 1000).toFixed(1) : ((probeMs + oneTrain) / 1000).toFixed(0)} s; probe + train all ${targets.length + 1} targets: ${((probeMs + allTrain) / 1000).toFixed(1)} s (goal: under ${goal / 1000} s)`,
  );
  console.log(`whole run: ${((performance.now() - started) / 1000).toFixed(0)} s`);
} finally {
  await runner.close();
  rmSync(work, { recursive: true, force: true });
}
