/**
 * Lens on the embedded model, end to end: probe (probe split) -> subspace delta (lambda/alpha picked
 * on the train split) and trained adapter (train split) -> base vs subspace vs adapter on the eval split
 * (src/gpu-backend/lens/eval/ says exactly what each figure is, one module per figure).
 *
 *   node --import tsx tools/lens-results.ts [--quick] [--model models/lens-tiny-chat] [--eval-n 48]
 *   npm run lens:results
 *
 * The full run writes docs/lens-results.md and docs/lens-results.json; --quick (fewer prompts
 * everywhere, a smaller sweep) only prints. The "Reading" section of docs/lens-results.md is kept across
 * runs (it is written by a person, from the figures).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { HiddenStateCollector } from "../src/gpu-backend/lens/hidden-states.js";
import { probe as runProbe, type LensProbe } from "../src/gpu-backend/lens/probe/probe.js";
import { subspaceDelta, type DeltaFile } from "../src/gpu-backend/lens/probe/subspace-delta.js";
import { trainDelta } from "../src/gpu-backend/lens/train/train.js";
import { trainedDeltaFile } from "../src/gpu-backend/lens/train/delta-file.js";
import { driftOf, lastAndAllLogits } from "../src/gpu-backend/lens/eval/drift.js";
import { evaluateLanguage, type LanguageEvaluation } from "../src/gpu-backend/lens/eval/evaluate.js";
import { countFidelity, generateReplies } from "../src/gpu-backend/lens/eval/fidelity.js";
import { ForwardPasses, type NamedDelta } from "../src/gpu-backend/lens/eval/passes.js";
import { probePromptIds } from "../src/gpu-backend/lens/hidden-states.js";
import { loadModel, type LoadedModel } from "../src/gpu-backend/load.js";

const TARGETS = ["zh", "ja", "ko", "ar", "bn", "sw", "es", "fr", "de", "ru", "hi", "th"] as const;
const ALL = ["en", ...TARGETS];

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const quick = process.argv.includes("--quick");
const modelDir = arg("--model", "models/lens-tiny-chat");
const promptsPath = arg("--prompts", "data/lens-prompts/prompts.jsonl");

/** Everything the figures depend on. */
const S = {
  /** Probe prompts per language (probe split; Swahili has fewer). */
  probeN: Number(arg("--probe-n", quick ? "40" : "200")),
  /** Parallel train-split rows (en + target) for the adapter (Swahili has 19). */
  trainN: Number(arg("--train-n", quick ? "32" : "160")),
  /** Train-split rows the subspace sweep judges on (the first of the adapter's rows). */
  sweepN: Number(arg("--sweep-n", quick ? "8" : "24")),
  /** Eval-split rows per language (evenly spaced over the split; Swahili has 21). */
  evalN: Number(arg("--eval-n", quick ? "10" : "48")),
  maxTokens: 48,
  maxPromptTokens: 192,
  window: 256,
  /** The sweep's grid (lambda = alpha = 0, the identity, left out). */
  lambdas: quick ? [0, 1] : [0, 0.5, 1],
  alphas: quick ? [0, 1] : [0, 0.5, 1, 2],
  /** Sweep constraint: English drift at the last prompt position (train prompts), nats. */
  sweepKlLimit: 0.01,
  adapter: { rank: 4, steps: 200, lr: 3e-2, alpha: 1, w_r: 1, w_a: 1, seed: 1 },
};

interface Row {
  id: string;
  split: "probe" | "train" | "eval";
  text: Record<string, string | undefined>;
}
const rows: Row[] = readFileSync(promptsPath, "utf8")
  .split("\n")
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l) as Row);

const has = (r: Row, l: string) => typeof r.text[l] === "string" && r.text[l]!.length > 0;
/** The first n rows of a split with all the languages. */
const firstRows = (split: Row["split"], langs: string[], n: number) =>
  rows.filter((r) => r.split === split && langs.every((l) => has(r, l))).slice(0, n);
/** n rows evenly spaced over the split (both sources represented), with all the languages. */
function spreadRows(split: Row["split"], langs: string[], n: number): Row[] {
  const all = rows.filter((r) => r.split === split && langs.every((l) => has(r, l)));
  if (all.length <= n) return all;
  return Array.from({ length: n }, (_, k) => all[Math.floor((k * all.length) / n)]!);
}

const t0 = performance.now();
const secs = () => ((performance.now() - t0) / 1000).toFixed(0);
const m: LoadedModel = await loadModel(modelDir, { executionProvider: "cpu", maxBatch: 16, maxQueue: 4096 });
const top = m.info.numLayers - 1;
const sessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 };

// 1. Probe: the top layer, the one both deltas edit (the trainer trains the model's last layer).
const collector = await HiddenStateCollector.create({ info: m.info, tokenizer: m.tokenizer }, [top], {
  sessionOptions,
});
const probePrompts: Record<string, string[]> = {};
for (const l of ALL)
  probePrompts[l] = rows
    .filter((r) => r.split === "probe" && has(r, l))
    .slice(0, S.probeN)
    .map((r) => r.text[l]!);
const probe: LensProbe = await runProbe(collector, probePrompts, [top], "en", { fingerprint: m.fingerprint });
console.log(
  `probe ${probe.id}: layer ${top}, rank ${probe.layers[0]!.rank}, counts ${JSON.stringify(probe.counts)} [${secs()} s]`,
);

const passes = new ForwardPasses(m.info, [top], sessionOptions);

function register(file: DeltaFile): NamedDelta {
  const put = m.deltas.put(file.bytes, file.manifest);
  if (!put.ok) throw new Error(put.error.message);
  return { id: file.manifest.id, layers: m.deltas.get(file.manifest.id)!.layers };
}

interface SweepPoint {
  lambda: number;
  alpha: number;
  fidelity: number;
  klLast: number;
}
interface LanguageRun {
  language: string;
  trainRows: number;
  sweep: { base: number; points: SweepPoint[]; chosen: { lambda: number; alpha: number }; rule: string };
  adapter: { id: string; losses: { initial: number; final: number }; trainMs: number };
  evaluation: LanguageEvaluation;
}
const runs: LanguageRun[] = [];

for (const lang of TARGETS) {
  const lt = performance.now();
  const train = firstRows("train", ["en", lang], S.trainN);
  const sweepRows = train.slice(0, S.sweepN);
  const promptIds = (texts: string[]) =>
    texts.map((t) => probePromptIds(m.tokenizer, t, { maxPromptTokens: S.maxPromptTokens }));
  const sweepTarget = sweepRows.map((r) => r.text[lang]!);
  const sweepEnglish = promptIds(sweepRows.map((r) => r.text.en!));
  const sweepTargetIds = promptIds(sweepTarget);

  // 2. Subspace delta: lambda/alpha by a small sweep on train prompts (fidelity; English drift as a limit).
  const baseFid = countFidelity(
    lang,
    sweepTarget,
    await generateReplies(m.engine, sweepTargetIds, null, S.maxTokens),
  ).rate;
  const baseEn = await lastAndAllLogits(passes, sweepEnglish, null);
  const points: SweepPoint[] = [];
  for (const lambda of S.lambdas) {
    for (const alpha of S.alphas) {
      if (lambda === 0 && alpha === 0) continue;
      const d = register(subspaceDelta(probe, { language: lang, layers: [top], lambda, alpha }));
      const fid = countFidelity(
        lang,
        sweepTarget,
        await generateReplies(m.engine, sweepTargetIds, d, S.maxTokens),
      ).rate;
      const kl = driftOf(baseEn, await lastAndAllLogits(passes, sweepEnglish, d.layers)).klLast;
      points.push({ lambda, alpha, fidelity: fid, klLast: kl });
    }
  }
  const within = points.filter((p) => p.klLast <= S.sweepKlLimit);
  const pool = within.length > 0 ? within : points;
  const best = [...pool].sort((a, b) => b.fidelity - a.fidelity || a.klLast - b.klLast)[0]!;
  const rule =
    within.length > 0
      ? `best train fidelity among points with English KL <= ${S.sweepKlLimit}`
      : `no point met English KL <= ${S.sweepKlLimit}: best train fidelity, then lowest KL`;
  const subspace = register(
    subspaceDelta(probe, { language: lang, layers: [top], lambda: best.lambda, alpha: best.alpha }),
  );

  // 3. Trained adapter on the train split.
  const trained = await trainDelta({
    model: { info: m.info, tokenizer: m.tokenizer },
    probe,
    language: lang,
    ...S.adapter,
    prompts: { en: train.map((r) => r.text.en!), target: train.map((r) => r.text[lang]!) },
    fingerprint: m.fingerprint,
    sessionOptions,
  });
  const adapter = register(trainedDeltaFile(trained));

  // 4. Base vs subspace vs adapter on the eval split.
  const evalRows = spreadRows("eval", ["en", lang], S.evalN);
  const evaluation = await evaluateLanguage(m, passes, {
    language: lang,
    target: evalRows.map((r) => r.text[lang]!),
    english: evalRows.map((r) => r.text.en!),
    deltas: { subspace, adapter },
    probe,
    alignmentLayer: top,
    maxTokens: S.maxTokens,
    maxPromptTokens: S.maxPromptTokens,
    window: S.window,
  });
  runs.push({
    language: lang,
    trainRows: train.length,
    sweep: { base: baseFid, points, chosen: { lambda: best.lambda, alpha: best.alpha }, rule },
    adapter: {
      id: adapter.id,
      losses: { initial: trained.losses[0]!.total, final: trained.losses.at(-1)!.total },
      trainMs: trained.trainMs,
    },
    evaluation,
  });
  const e = evaluation;
  console.log(
    `${lang}: fidelity ${pct(e.base.fidelity.rate)} / ${pct(e.deltas.subspace!.fidelity.rate)} / ${pct(e.deltas.adapter!.fidelity.rate)}, ` +
      `bpb ${e.base.bitsPerByte.bitsPerByte.toFixed(3)} / ${e.deltas.subspace!.bitsPerByte.bitsPerByte.toFixed(3)} / ${e.deltas.adapter!.bitsPerByte.bitsPerByte.toFixed(3)}, ` +
      `KL ${e.deltas.subspace!.drift.klLast.toExponential(2)} / ${e.deltas.adapter!.drift.klLast.toExponential(2)} ` +
      `(subspace lambda ${best.lambda} alpha ${best.alpha}) [${((performance.now() - lt) / 1000).toFixed(0)} s, total ${secs()} s]`,
  );
}
await passes.release();
await collector.release();

// ---------------------------------------------------------------------------------------------------
// Report.

function pct(x: number): string {
  return Number.isNaN(x) ? "n/a" : `${(100 * x).toFixed(0)}%`;
}
const f3 = (x: number) => x.toFixed(3);
const kl = (x: number) => (x === 0 ? "0" : x < 1e-3 ? x.toExponential(1) : x.toFixed(3));
const rel = (a: number, b: number) => `${b >= a ? "+" : ""}${((100 * (b - a)) / a).toFixed(1)}%`;

const header = [
  "| lang | eval n | fidelity base / subspace / adapter | und base / sub / ad | bpb base / subspace / adapter | bpb change sub / ad | English KL last: sub / ad | English KL all pos: sub / ad | cos(h_l, h_en) base / sub / ad | m_a gap base / sub / ad | subspace lambda, alpha |",
  "|---|---:|---|---|---|---|---|---|---|---|---|",
];
const table = [...header];
for (const r of runs) {
  const e = r.evaluation;
  const b = e.base;
  const s = e.deltas.subspace!;
  const a = e.deltas.adapter!;
  table.push(
    `| ${r.language} | ${b.fidelity.prompts} | ${pct(b.fidelity.rate)} / ${pct(s.fidelity.rate)} / ${pct(a.fidelity.rate)} | ` +
      `${pct(b.fidelity.undRate)} / ${pct(s.fidelity.undRate)} / ${pct(a.fidelity.undRate)} | ` +
      `${f3(b.bitsPerByte.bitsPerByte)} / ${f3(s.bitsPerByte.bitsPerByte)} / ${f3(a.bitsPerByte.bitsPerByte)} | ` +
      `${rel(b.bitsPerByte.bitsPerByte, s.bitsPerByte.bitsPerByte)} / ${rel(b.bitsPerByte.bitsPerByte, a.bitsPerByte.bitsPerByte)} | ` +
      `${kl(s.drift.klLast)} / ${kl(a.drift.klLast)} | ${kl(s.drift.klAllPositions)} / ${kl(a.drift.klAllPositions)} | ` +
      `${f3(b.alignment!.cosine)} / ${f3(s.alignment!.cosine)} / ${f3(a.alignment!.cosine)} | ` +
      `${b.alignment!.agnosticGap.toFixed(2)} / ${s.alignment!.agnosticGap.toFixed(2)} / ${a.alignment!.agnosticGap.toFixed(2)} | ` +
      `${r.sweep.chosen.lambda}, ${r.sweep.chosen.alpha} |`,
  );
}

/** The goals, checked per delta kind. */
function goals(kind: "subspace" | "adapter") {
  const fidelityUp = runs
    .filter((r) => r.evaluation.deltas[kind]!.fidelity.rate > r.evaluation.base.fidelity.rate)
    .map((r) => r.language);
  const driftOk = runs.filter((r) => r.evaluation.deltas[kind]!.drift.klLast < 0.01).map((r) => r.language);
  const bpbOk = runs
    .filter(
      (r) => r.evaluation.deltas[kind]!.bitsPerByte.bitsPerByte <= 1.02 * r.evaluation.base.bitsPerByte.bitsPerByte,
    )
    .map((r) => r.language);
  const miss = (ok: string[]) => TARGETS.filter((l) => !ok.includes(l));
  return {
    fidelity_up: { met: fidelityUp.length === TARGETS.length, missed: miss(fidelityUp) },
    english_kl_last_under_0_01: { met: driftOk.length === TARGETS.length, missed: miss(driftOk) },
    bpb_within_2pct: { met: bpbOk.length === TARGETS.length, missed: miss(bpbOk) },
  };
}
const goalSummary = { subspace: goals("subspace"), adapter: goals("adapter") };
const totalS = (performance.now() - t0) / 1000;

console.log(table.join("\n"));
console.log(JSON.stringify(goalSummary, null, 2));
console.log(`total ${totalS.toFixed(0)} s`);

if (!quick) {
  const date = new Date().toISOString().slice(0, 10);
  const json = {
    date,
    command: "node --import tsx tools/lens-results.ts",
    model: modelDir,
    fingerprint: m.fingerprint,
    prompts: promptsPath,
    settings: S,
    probe: { id: probe.id, layer: top, rank: probe.layers[0]!.rank, counts: probe.counts, prompt: probe.prompt },
    seconds: Math.round(totalS),
    goals: goalSummary,
    languages: runs,
  };
  const out = "docs/lens-results.json";
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(json, null, 2)}\n`);

  const mdPath = "docs/lens-results.md";
  const start = "<!-- reading:start -->";
  const end = "<!-- reading:end -->";
  let reading = "(to be written from the figures)";
  if (existsSync(mdPath)) {
    const old = readFileSync(mdPath, "utf8");
    const i = old.indexOf(start);
    const j = old.indexOf(end);
    if (i >= 0 && j > i) reading = old.slice(i + start.length, j).trim();
  }
  const goalLines = (["subspace", "adapter"] as const).map((k) => {
    const g = goalSummary[k];
    const line = (name: string, x: { met: boolean; missed: string[] }) =>
      `${name}: ${x.met ? "met" : `missed in ${x.missed.join(", ")}`}`;
    return `- ${k}: ${line("fidelity up in every target language", g.fidelity_up)}; ${line("English drift (KL at the last prompt position) < 0.01 nats", g.english_kl_last_under_0_01)}; ${line("bits per byte at most 2% worse", g.bpb_within_2pct)}.`;
  });
  const md = `# Lens on the embedded model: base vs subspace delta vs trained adapter

Measured ${date} on the CPU (2 shared cores), ${Math.round(totalS)} s in all, with

\`\`\`
node --import tsx tools/lens-results.ts      # or: npm run lens:results
\`\`\`

Model \`${modelDir}\` (\`${m.fingerprint}\`); prompts \`${promptsPath}\` (splits: probe for the probe, train
for the sweep and the adapter, eval for every figure below; no eval text is used for anything else).

## Settings

- Probe: layer ${top} (the last of ${m.info.numLayers}), central language en, all 13 languages, up to ${S.probeN} probe-split
  prompts per language (Swahili: ${probe.counts.sw}), chat template, last token of the prompt cut to ${probe.prompt.maxTokens} tokens
  (frame kept); M_s rank ${probe.layers[0]!.rank}. Only the last layer is edited, by both kinds of delta: the trainer trains
  the model's last layer (the reference edits the top layers), and the same layer for the closed-form edit keeps the
  two comparable.
- Subspace delta (A = M_s, B = -lambda M_s^T, b = alpha Delta_l at layer ${top}): lambda in {${S.lambdas.join(", ")}} x
  alpha in {${S.alphas.join(", ")}}, picked per language on the first ${S.sweepN} train-split rows: the best greedy-reply
  fidelity among points whose English drift (KL at the last prompt position, train English prompts, delta forced
  on) is at most ${S.sweepKlLimit} nats; where no point qualifies, the best fidelity, ties to the lowest drift (the JSON
  records which rule applied and every point).
- Adapter: \`trainDelta\` on up to ${S.trainN} parallel train-split rows (en + target; Swahili: 19), rank ${S.adapter.rank},
  ${S.adapter.steps} full-batch Adam steps, lr ${S.adapter.lr} (cosine), alpha ${S.adapter.alpha}, w_r ${S.adapter.w_r}, w_a ${S.adapter.w_a}, seed ${S.adapter.seed}.
- Evaluation (\`src/gpu-backend/lens/eval/\`): ${S.evalN} eval-split rows per language with both the target text and
  its English original, evenly spaced over the split (Swahili has ${runs.find((r) => r.language === "sw")?.evaluation.base.fidelity.prompts ?? "?"}); fewer than the split holds, to keep
  the whole run within about 10 minutes on 2 cores.
  - fidelity: share of greedy replies (${S.maxTokens} new tokens, prompts cut to ${S.maxPromptTokens} tokens, generated by the
    engine with the delta applied while generating) that \`detectLanguage\` identifies as the prompt's language;
    \`und\` counts as not faithful (its share is listed);
  - bpb: bits per UTF-8 byte of the eval texts (the user text given the chat frame before it, within ${S.window} tokens),
    delta applied at every position;
  - English KL: KL(base || edited) in nats on the English originals of the same rows with the target's delta forced
    on, at the last prompt position (mean over prompts) and pooled over all prompt positions;
  - alignment at layer ${top}, last prompt token, prompts cut as the probe cut them: mean cos(h_l, h_en) between the
    target prompt's state (edited by the delta, or base) and its English original's (base: English is not edited),
    and the mean gap |a.h_l - a.h_en| along a = m_a/||m_a||. (The JSON also has ||P_s(h_l - h_en)||.)

## Results

${table.join("\n")}

Goals (fidelity up in every target language; English drift under 0.01 nats; no language's bits per byte worse by more
than 2%), as checked by the script:

${goalLines.join("\n")}

## Reading

${start}
${reading}
${end}
`;
  writeFileSync(mdPath, md);
  console.log(`wrote ${out} and ${mdPath}`);
}
