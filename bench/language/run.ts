/**
 * Language detection benchmark: the gateway's detector against the candidate npm libraries, on the
 * labelled test set (test/fixtures/language-prompts.jsonl) and on a smaller Latin-script set written
 * after the detector (bench/language/holdout-latin.jsonl; both written for this project, no outside
 * source), with time per call and bundle size.
 *
 *   node --import tsx bench/language/run.ts
 *
 * Figures come from Node on whatever machine runs this; the numbers quoted in the source come from a
 * shared 2-core machine with other work running, so treat times as rough (+-30%).
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { franc } from "franc-min";
import eldXs from "eld/extrasmall";
import * as tinyldLight from "tinyld/light";
import { LANGUAGES, type LanguageOrUnd } from "../../src/protocol/languages.js";
import { detectLanguage } from "../../src/language/detect.js";
import { countScripts } from "../../src/language/script.js";
import { decidedByVote } from "../../src/language/latin.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

interface Row {
  lang: string;
  text: string;
}
const load = (path: string): Row[] =>
  readFileSync(resolve(root, path), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Row);

const testSet = load("test/fixtures/language-prompts.jsonl");
const holdout = load("bench/language/holdout-latin.jsonl");
const LATIN = new Set(["en", "es", "fr", "de", "sw"]);

// franc uses ISO 639-3; map the product's languages (and macro-language variants) to our tags.
const FROM_ISO3: Record<string, LanguageOrUnd> = {
  eng: "en",
  cmn: "zh",
  jpn: "ja",
  kor: "ko",
  arb: "ar",
  ben: "bn",
  swh: "sw",
  spa: "es",
  fra: "fr",
  deu: "de",
  rus: "ru",
  hin: "hi",
  tha: "th",
};
const OUR_ISO3 = Object.keys(FROM_ISO3);
const LATIN_ISO3 = ["eng", "spa", "fra", "deu", "swh"];
const iso2 = (tag: string): LanguageOrUnd | string => (tag === "" ? "und" : tag);

/** Script check of detect.ts, then franc-min alone for Latin text: the design without the vote. */
function scriptThenFranc(text: string): string {
  const c = countScripts(text);
  const latinOnly =
    c.latin > 0 &&
    c.latin >=
      3 * (2 * (c.han + c.kana + c.hangul) + c.arabic + c.devanagari + c.bengali + c.thai + c.cyrillic + c.other);
  if (!latinOnly) return detectLanguage(text);
  return FROM_ISO3[franc(text, { only: LATIN_ISO3 })] ?? "und";
}

const eldOurs = eldXs.newInstance();
eldOurs.setLanguageSubset(LANGUAGES.filter((l) => l !== "sw"));
const tinyldSupported = new Set(tinyldLight.supportedLanguages.map((l) => tinyldLight.toISO2(l)));
const tinyldOnly = LANGUAGES.filter((l) => tinyldSupported.has(l));

interface Candidate {
  name: string;
  short: string;
  detect: (text: string) => string;
  /** Module source that esbuild bundles to measure the bundle-size contribution. */
  entry: string;
}

const candidates: Candidate[] = [
  {
    name: "lens detector (script + function words + franc-min/5)",
    short: "lens detector",
    detect: detectLanguage,
    entry: `export { detectLanguage } from "./src/language/detect.ts";`,
  },
  {
    name: "ablation: script + franc-min/5, no word vote, no Latin und rules",
    short: "ablation",
    detect: scriptThenFranc,
    entry: `export { detectLanguage } from "./src/language/detect.ts";`,
  },
  {
    name: "franc-min 6.2, all 82 languages",
    short: "franc-min all",
    detect: (t) => FROM_ISO3[franc(t)] ?? franc(t),
    entry: `export { franc } from "franc-min";`,
  },
  {
    name: "franc-min 6.2, only our 13",
    short: "franc-min our 13",
    detect: (t) => FROM_ISO3[franc(t, { only: OUR_ISO3 })] ?? "und",
    entry: `export { franc } from "franc-min";`,
  },
  {
    name: "eld 2.1 extrasmall, all 60 (no sw)",
    short: "eld xs all",
    detect: (t) => iso2(eldXs.detect(t).language),
    entry: `export { eld } from "eld/extrasmall";`,
  },
  {
    name: "eld 2.1 extrasmall, subset of our 12",
    short: "eld xs subset",
    detect: (t) => iso2(eldOurs.detect(t).language),
    entry: `export { eld } from "eld/extrasmall";`,
  },
  {
    name: "tinyld 1.3 light, all 24 (no sw)",
    short: "tinyld light all",
    detect: (t) => iso2(tinyldLight.detect(t)),
    entry: `export { detect } from "tinyld/light";`,
  },
  {
    name: `tinyld 1.3 light, only our ${tinyldOnly.length}`,
    short: "tinyld light ours",
    detect: (t) => iso2(tinyldLight.detect(t, { only: tinyldOnly })),
    entry: `export { detect } from "tinyld/light";`,
  },
];

function accuracy(detect: (t: string) => string, rows: Row[]) {
  const per = new Map<string, [number, number]>();
  for (const r of rows) {
    const p = per.get(r.lang) ?? [0, 0];
    p[1]++;
    if (detect(r.text) === r.lang) p[0]++;
    per.set(r.lang, p);
  }
  return per;
}

function microsPerCall(detect: (t: string) => string, texts: string[]): number {
  let sink = 0;
  for (let i = 0; i < 3000; i++) sink += detect(texts[i % texts.length]!).length; // warm up the JIT
  const iterations = Math.max(20_000, texts.length * 50);
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink += detect(texts[i % texts.length]!).length;
  const ns = Number(process.hrtime.bigint() - start);
  if (sink < 0) console.log(sink);
  return ns / iterations / 1000;
}

const bundleCache = new Map<string, [number, number]>();
async function bundleBytes(entry: string): Promise<[number, number]> {
  const cached = bundleCache.get(entry);
  if (cached) return cached;
  const out = await build({
    stdin: { contents: entry, resolveDir: root, loader: "ts", sourcefile: "entry.ts" },
    bundle: true,
    minify: true,
    write: false,
    format: "esm",
    platform: "browser",
    conditions: ["workerd", "worker", "browser"],
    target: "es2022",
    logLevel: "silent",
  });
  const bytes = out.outputFiles[0]!.contents;
  const sizes: [number, number] = [bytes.length, gzipSync(bytes).length];
  bundleCache.set(entry, sizes);
  return sizes;
}

const pct = (ok: number, n: number) => (n === 0 ? "-" : `${((100 * ok) / n).toFixed(1)}%`);
const sum = (per: Map<string, [number, number]>, keep: (l: string) => boolean): [number, number] => {
  let ok = 0,
    n = 0;
  for (const [l, [a, b]] of per)
    if (keep(l)) {
      ok += a;
      n += b;
    }
  return [ok, n];
};

const langRows = testSet.filter((r) => r.lang !== "und");
const allTexts = testSet.map((r) => r.text);
const latinTexts = testSet.filter((r) => LATIN.has(r.lang)).map((r) => r.text);

console.log(
  `Language detection: ${langRows.length} prompts in ${LANGUAGES.length} languages + ` +
    `${testSet.length - langRows.length} und cases (test set); ${holdout.length} Latin-script prompts (holdout)`,
);
console.log(
  `Times: Node ${process.version}, warm loop over the whole set; on a shared 2-core machine they move +-30%.\n`,
);

const header = [
  "candidate",
  "13 langs",
  "und",
  "Latin",
  "holdout",
  "us/call all",
  "us/call Latin",
  "min KB",
  "gzip KB",
];
const table: string[][] = [];
const perLanguage: string[][] = [];
for (const c of candidates) {
  const per = accuracy(c.detect, testSet);
  const [ok, n] = sum(per, (l) => l !== "und");
  const [uok, un] = sum(per, (l) => l === "und");
  const [lok, ln] = sum(per, (l) => LATIN.has(l));
  const [hok, hn] = sum(accuracy(c.detect, holdout), () => true);
  const [min, gz] = await bundleBytes(c.entry);
  table.push([
    c.name,
    `${pct(ok, n)} (${ok}/${n})`,
    `${uok}/${un}`,
    `${lok}/${ln}`,
    `${hok}/${hn}`,
    microsPerCall(c.detect, allTexts).toFixed(1),
    microsPerCall(c.detect, latinTexts).toFixed(1),
    (min / 1024).toFixed(1),
    (gz / 1024).toFixed(1),
  ]);
  perLanguage.push([
    c.short,
    ...LANGUAGES.map((l) => {
      const p = per.get(l)!;
      return `${p[0]}`;
    }),
  ]);
}

const print = (head: string[], rows: string[][]) => {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((s, i) => (i === 0 ? s.padEnd(widths[i]!) : s.padStart(widths[i]!))).join("  ");
  console.log(line(head));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(r));
};
print(header, table);
console.log(`\nCorrect per language (of ${langRows.length / LANGUAGES.length} each):`);
print(["candidate", ...LANGUAGES], perLanguage);
const byVote = [...testSet, ...holdout].filter((r) => LATIN.has(r.lang));
console.log(
  `\nLatin-script prompts settled by the function-word vote alone (no franc call): ` +
    `${byVote.filter((r) => decidedByVote(r.text)).length}/${byVote.length}`,
);
console.log(
  "\nTarget (docs/design.md): >= 98% and <= 30 us per call in workerd. Bundle sizes: esbuild, " +
    "browser platform with worker conditions, minified; the detector's row includes franc-min.",
);
