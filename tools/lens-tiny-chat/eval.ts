/**
 * Per-language figures for the model card, on the held-out parallel prompts (never seen in training):
 *   - bits per byte and bits per character of the prompt text (the user turn, chat template applied),
 *     over all held-out prompts of the language, within the model's 256-token training window;
 *   - off-target rate: the share of greedy replies to eval-split prompts in language X that the gateway's
 *     language detector (src/language/detect.ts) does not identify as X.
 *
 *   node --import tsx tools/lens-tiny-chat/eval.ts [--model models/lens-tiny-chat] [--prompts data/lens-prompts/prompts.jsonl]
 *
 * Writes MODEL/eval.json and the figures table between the eval markers in MODEL/MODEL_CARD.md.
 * Deterministic (greedy decoding, fp32, CPU).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { detectLanguage } from "../../src/language/detect.js";
import { bitsOf, decode, encode, greedy, loadModel, renderChat } from "./runtime.js";

const LANGS = ["en", "zh", "ja", "ko", "ar", "bn", "sw", "es", "fr", "de", "ru", "hi", "th"] as const;
type Lang = (typeof LANGS)[number];

interface PromptRow {
  id: string;
  split: "probe" | "train" | "eval";
  source: string;
  text: Partial<Record<Lang, string>>;
}

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const modelDir = arg("--model", "models/lens-tiny-chat");
const promptsPath = arg("--prompts", "data/lens-prompts/prompts.jsonl");
const maxNew = Number(arg("--max-new", "64"));
const limit = Number(arg("--limit", "0")); // development only: at most this many prompts per language
const WINDOW = 256;

const rows: PromptRow[] = readFileSync(promptsPath, "utf8")
  .split("\n")
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l) as PromptRow);

const m = await loadModel(modelDir);

interface LangFigures {
  prompts_all: number;
  bytes: number;
  chars: number;
  bits: number;
  bits_per_byte: number;
  bits_per_char: number;
  eval_prompts: number;
  off_target: number;
  off_target_rate: number;
  reply_languages: Record<string, number>;
  examples: { id: string; prompt: string; reply: string; detected: string }[];
}

const figures: Partial<Record<Lang, LangFigures>> = {};
const t0 = Date.now();
for (const lang of LANGS) {
  const f: LangFigures = {
    prompts_all: 0,
    bytes: 0,
    chars: 0,
    bits: 0,
    bits_per_byte: 0,
    bits_per_char: 0,
    eval_prompts: 0,
    off_target: 0,
    off_target_rate: 0,
    reply_languages: {},
    examples: [],
  };
  for (const row of rows) {
    const text = row.text[lang];
    if (!text) continue;
    if (limit > 0 && f.prompts_all >= limit) break;
    // Bits of the user text given "<|user|>\n", within the training window.
    const prefix = encode(m, renderChat(m, [{ role: "user", content: "" }], false)).length - 2; // "<|user|>\n"
    const full = encode(m, renderChat(m, [{ role: "user", content: text }], false));
    const textIds = encode(m, text);
    const n = Math.min(textIds.length, WINDOW - prefix);
    const ids = full.slice(0, prefix + n);
    const counted = Buffer.from(textIds.slice(0, n)).toString("utf8");
    f.bits += await bitsOf(m, ids, prefix);
    f.bytes += n;
    f.chars += [...counted.replace(/\uFFFD$/u, "")].length;
    f.prompts_all += 1;

    if (row.split !== "eval") continue;
    const prompt = encode(m, renderChat(m, [{ role: "user", content: text }], true));
    const reply = decode(m, await greedy(m, prompt.slice(0, WINDOW), maxNew)).trim();
    const detected = detectLanguage(reply);
    f.eval_prompts += 1;
    if (detected !== lang) f.off_target += 1;
    f.reply_languages[detected] = (f.reply_languages[detected] ?? 0) + 1;
    if (f.examples.length < 3) f.examples.push({ id: row.id, prompt: text, reply, detected });
  }
  f.bits_per_byte = f.bits / f.bytes;
  f.bits_per_char = f.bits / f.chars;
  f.off_target_rate = f.eval_prompts ? f.off_target / f.eval_prompts : NaN;
  figures[lang] = f;
  console.log(
    `${lang}: bpb ${f.bits_per_byte.toFixed(3)} bpc ${f.bits_per_char.toFixed(3)} (n=${f.prompts_all}) ` +
      `off-target ${(100 * f.off_target_rate).toFixed(1)}% of ${f.eval_prompts} ${JSON.stringify(f.reply_languages)} ` +
      `[${((Date.now() - t0) / 1000).toFixed(0)} s]`,
  );
}

const detectorProbe = detectLanguage("The quick brown fox jumps over the lazy dog near the river bank.");
const out = {
  model: modelDir,
  prompts: promptsPath,
  max_new_tokens: maxNew,
  decoding: "greedy, stop at <|end|>",
  detector: "src/language/detect.ts detectLanguage",
  detector_sanity_en: detectorProbe,
  languages: figures,
};
writeFileSync(join(modelDir, "eval.json"), `${JSON.stringify(out, null, 2)}\n`);

const pct = (x: number) => (Number.isNaN(x) ? "n/a" : `${(100 * x).toFixed(1)}%`);
const lines = [
  "| language | held-out prompts | bits/byte | bits/char | eval prompts | off-target rate | replies detected as (eval split) |",
  "|---|---:|---:|---:|---:|---:|---|",
];
for (const lang of LANGS) {
  const f = figures[lang]!;
  const langs = Object.entries(f.reply_languages)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  lines.push(
    `| ${lang} | ${f.prompts_all} | ${f.bits_per_byte.toFixed(3)} | ${f.bits_per_char.toFixed(3)} | ${f.eval_prompts} | ${pct(f.off_target_rate)} | ${langs} |`,
  );
}
const table = lines.join("\n");
console.log(table);
const cardPath = join(modelDir, "MODEL_CARD.md");
if (existsSync(cardPath)) {
  const card = readFileSync(cardPath, "utf8");
  const start = "<!-- eval:start -->";
  const end = "<!-- eval:end -->";
  const i = card.indexOf(start);
  const j = card.indexOf(end);
  if (i >= 0 && j > i) {
    writeFileSync(cardPath, `${card.slice(0, i + start.length)}\n${table}\n${card.slice(j)}`);
    console.log("updated", cardPath);
  }
}
