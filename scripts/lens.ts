/**
 * `npm run lens -- <probe|subspace|train|eval> [options]`: Lens jobs in this process (no server), on
 * the same job runner the backend's /internal/v1/lens routes use, so the files land in the same layout
 * (<out>/<job id>/job.json and the artifact). Run `npm run lens -- --help` for the options.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { LANGUAGES } from "../src/protocol/languages.js";
import type { LensJobRecord, LensJobRequestInput } from "../src/protocol/lens-jobs.js";
import { lensEvaluator } from "../src/gpu-backend/lens/jobs/eval-job.js";
import { defaultJobsDir } from "../src/gpu-backend/lens/jobs/records.js";
import { LensJobRunner } from "../src/gpu-backend/lens/jobs/runner.js";
import { LensJobError, type JobModel } from "../src/gpu-backend/lens/jobs/work.js";
import { loadModel } from "../src/gpu-backend/load.js";
import { ChatTokenizer } from "../src/gpu-backend/model/chat-tokenizer.js";
import { modelFingerprint } from "../src/gpu-backend/model/fingerprint.js";
import { readModelDir } from "../src/gpu-backend/model/model-dir.js";

const DEFAULT_LANGUAGES = LANGUAGES.filter((l) => l !== "sw"); // Swahili has only ~19 parallel rows

const HELP = `Lens jobs, run in this process.

usage: npm run lens -- <command> [options]

commands
  probe      find the language subspaces: a probe artifact (<id>.safetensors + <id>.json)
  subspace   a closed-form subspace delta from a probe (A = M_s, B = -lambda M_s^T, b = alpha Delta)
  train      a trained adapter delta at the model's last layer (Lens losses, full-batch Adam)
  eval       evaluate a delta against the base model on the held-out eval prompts (fidelity, drift, bits/byte)

common options
  --model <dir>           model directory (default models/lens-tiny-chat)
  --out <dir>             jobs folder: each job writes <out>/<job id>/ (default LENS_JOBS_DIR or .lens/jobs)
  --threads <n>           onnxruntime intra-op threads (default 1)
  --batch-size <n>        prompts per forward pass (default: the collector's, 8)
  --json                  print the finished job's record as JSON
  -h, --help              this text

probe
  --languages <a,b,...>   languages (default ${DEFAULT_LANGUAGES.join(",")})
  --layers <i,j,...>      layers to probe (default: the last two; train needs the last)
  --central <lang>        central language (default en)
  --per-language <n>      rows of the held-out probe split, parallel (default 200)
  --prompts <file.json>   explicit prompts instead: { "<lang>": ["...", ...], ... }
  --rank <r>              rank of M_s (default L - 1)
  --max-prompt-tokens <n> token budget per templated prompt (default 64)
  --truncation <content|head>

train
  --probe <ref>           the probe: its job id or its probe id (a probe job in the same --out)
  --language <lang>       target language
  --rank <r> (4)  --steps <n> (200)  --lr <x> (3e-2)  --seed <n> (0)
  --w-r <x> (1)   --w-a <x> (1)      --alpha <x> (1)
  --per-language <n>      rows of the held-out train split (default 200)
  --dtype <float32|float16>

subspace
  --probe <ref>  --language <lang>  --layers <i,j,...>  --lambda <x> (1)  --alpha <x> (0)  --dtype <...>

eval
  --delta <ref>           a train or subspace job id (or the delta id it made) in the same --out
  --per-language <n>      prompts of the held-out eval split (default 50)
  --max-tokens <n>        greedy reply length for the fidelity figure (default 48)

examples
  npm run lens -- probe --languages en,es,zh,ja --per-language 100
  npm run lens -- train --probe <probe job id> --language es --steps 200
  npm run lens -- subspace --probe <probe job id> --language es --layers 3 --lambda 1 --alpha 0.5
`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: "string", default: "models/lens-tiny-chat" },
    out: { type: "string" },
    threads: { type: "string", default: "1" },
    "batch-size": { type: "string" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
    languages: { type: "string" },
    layers: { type: "string" },
    central: { type: "string" },
    "per-language": { type: "string" },
    prompts: { type: "string" },
    rank: { type: "string" },
    "max-prompt-tokens": { type: "string" },
    truncation: { type: "string" },
    probe: { type: "string" },
    language: { type: "string" },
    steps: { type: "string" },
    lr: { type: "string" },
    seed: { type: "string" },
    "w-r": { type: "string" },
    "w-a": { type: "string" },
    alpha: { type: "string" },
    lambda: { type: "string" },
    dtype: { type: "string" },
    delta: { type: "string" },
    "max-tokens": { type: "string" },
  },
});

const command = positionals[0];
if (values.help || command === undefined) {
  process.stdout.write(HELP);
  process.exit(command === undefined && !values.help ? 2 : 0);
}

function num(name: keyof typeof values): number | undefined {
  const raw = values[name];
  if (raw === undefined || typeof raw !== "string") return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`--${name} must be a number, got '${raw}'`);
  return n;
}
const list = (raw: string | undefined) =>
  raw === undefined
    ? undefined
    : raw
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
const defined = <T extends object>(o: T): T =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

async function main(): Promise<number> {
  // Eval generates replies through the engine, so it loads the whole model; the others need less.
  const model: JobModel =
    command === "eval"
      ? await loadModel(values.model, { executionProvider: "cpu", maxBatch: 16, maxQueue: 4096 })
      : await (async () => {
          const info = readModelDir(values.model);
          return {
            info,
            tokenizer: ChatTokenizer.fromDir(info.dir),
            fingerprint: await modelFingerprint(info.onnxPath),
          };
        })();
  const { info } = model;
  const threads = num("threads") ?? 1;
  const batchSize = num("batch-size");
  const evaluate = command === "eval" ? lensEvaluator() : null;
  const runner = new LensJobRunner(
    model,
    defined({
      dir: values.out ?? defaultJobsDir(),
      sessionOptions: { intraOpNumThreads: threads, interOpNumThreads: 1 },
      batchSize,
      evaluate,
    }),
  );

  let request: LensJobRequestInput;
  switch (command) {
    case "probe": {
      const layers = list(values.layers)?.map(Number) ?? [info.numLayers - 2, info.numLayers - 1].filter((l) => l >= 0);
      const prompts: unknown =
        values.prompts === undefined ? "probe" : JSON.parse(readFileSync(values.prompts, "utf8"));
      const languages =
        list(values.languages) ?? (prompts === "probe" ? [...DEFAULT_LANGUAGES] : Object.keys(prompts as object));
      request = defined({
        kind: "probe",
        languages,
        layers,
        prompts,
        central: values.central,
        per_language: num("per-language"),
        rank: num("rank"),
        max_prompt_tokens: num("max-prompt-tokens"),
        truncation: values.truncation,
      }) as LensJobRequestInput;
      break;
    }
    case "train":
      request = defined({
        kind: "train",
        probe: values.probe,
        language: values.language,
        rank: num("rank"),
        steps: num("steps"),
        lr: num("lr"),
        seed: num("seed"),
        weights: defined({ w_r: num("w-r"), w_a: num("w-a"), alpha: num("alpha") }),
        per_language: num("per-language"),
        dtype: values.dtype,
      }) as LensJobRequestInput;
      break;
    case "subspace":
      request = defined({
        kind: "subspace",
        probe: values.probe,
        language: values.language,
        layers: list(values.layers)?.map(Number) ?? [info.numLayers - 1],
        lambda: num("lambda") ?? 1,
        alpha: num("alpha") ?? 0,
        dtype: values.dtype,
      }) as LensJobRequestInput;
      break;
    case "eval":
      request = defined({
        kind: "eval",
        delta: values.delta,
        per_language: num("per-language"),
        max_tokens: num("max-tokens"),
      }) as LensJobRequestInput;
      break;
    default:
      process.stderr.write(`unknown command '${command}'\n\n${HELP}`);
      return 2;
  }

  let record: LensJobRecord;
  try {
    record = runner.submit(request);
  } catch (err) {
    if (err instanceof LensJobError) {
      process.stderr.write(`refused (${err.code}): ${err.message}\n`);
      await runner.close();
      return 2;
    }
    throw err;
  }
  const id = record.id;
  process.stderr.write(`${id}: ${request.kind} job on ${info.id}, jobs folder ${runner.dir}\n`);
  process.once("SIGINT", () => {
    process.stderr.write(`\ncancelling ${id}\n`);
    try {
      runner.cancel(id);
    } catch {
      // already finished
    }
  });

  let last = "";
  const timer = setInterval(() => {
    const r = runner.get(id);
    const p = r?.progress;
    if (!r || !p) return;
    const losses = p.losses
      ? `  loss ${p.losses.total.toExponential(3)} (retain ${p.losses.retain.toExponential(2)}, push ${p.losses.push.toExponential(2)}, align ${p.losses.align.toExponential(2)})`
      : "";
    const line = `  ${r.state} ${p.stage} ${p.done}/${p.total}${losses}`;
    if (line !== last) process.stderr.write(`${line}\n`);
    last = line;
  }, 250);
  const started = performance.now();
  record = await runner.wait(id);
  clearInterval(timer);
  await runner.close();

  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (values.json) process.stdout.write(`${JSON.stringify(record, null, 2)}\n`);
  if (record.state !== "succeeded") {
    process.stderr.write(`${id} ${record.state} after ${seconds} s: ${record.error?.message ?? ""}\n`);
    return 1;
  }
  const a = record.artifact!;
  const dir = `${runner.dir}/${id}`;
  process.stderr.write(`${id} succeeded in ${seconds} s\n`);
  process.stderr.write(`  ${a.kind} ${a.id}\n`);
  if (a.tensors !== null) process.stderr.write(`  tensors   ${dir}/${a.tensors} (${a.bytes} bytes)\n`);
  process.stderr.write(`  manifest  ${dir}/${a.manifest}\n  record    ${dir}/job.json\n`);
  if (record.result) process.stderr.write(`  result    ${JSON.stringify(record.result)}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
