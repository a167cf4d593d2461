/**
 * Latin-script languages: en, es, fr, de, sw.
 *
 * franc-min (restricted to these five) is the statistical detector: of the maintained npm detectors
 * it is the only one with Swahili (eld and tinyld have none), it needs no WebAssembly and adds about
 * 170 KB minified (55 KB gzip; eld's smallest model is 955 KB). On its own it is not accurate enough on short chat prompts, and slow here:
 * measured on this project's test set (bench/language/run.ts), 131/140 Latin prompts right (its
 * trigram profiles come from formal text and confuse "How do I reset my router password?" with
 * French), and about 55 us per call on the shared 2-core machine, over the 30 us budget.
 *
 * So a function-word vote runs first: the most frequent closed-class words of each language
 * (articles, pronouns, prepositions, question words, auxiliaries), listed from general knowledge
 * of the languages, not drawn from the test prompts. When a single language has the most hits it
 * decides and franc is skipped; otherwise franc decides among the languages tied at the top
 * of the vote (all five when no word matched). Measured figures are in the comment on `detectLatin`.
 */
import { francAll } from "franc-min";

export type LatinLanguage = "en" | "es" | "fr" | "de" | "sw";

const EN = 1,
  ES = 2,
  FR = 4,
  DE = 8,
  SW = 16;
const BITS: ReadonlyArray<readonly [number, LatinLanguage, string]> = [
  [EN, "en", "eng"],
  [ES, "es", "spa"],
  [FR, "fr", "fra"],
  [DE, "de", "deu"],
  [SW, "sw", "swh"],
];

const LISTS: ReadonlyArray<readonly [number, string]> = [
  [
    EN,
    "the a an is are was were be been do does did i you he she we they my your me it its this that these " +
      "those what how why who which when where can could would should will to of and or but for with on at " +
      "from about into please not have has had there if as by than some any",
  ],
  [
    ES,
    "el la los las lo un una unos unas de del al que qué y o en es son está están por para con sin " +
      "cómo como cuál cuáles cuánto cuántos cuántas dónde cuándo quién mi mis tu tus su sus me te se nos " +
      "este esta esto estos estas ese esa hay muy más pero porque también ya yo le les",
  ],
  [
    FR,
    "le la les l un une des de du d au aux et est sont en que qu qui quoi pour dans avec sur par pas ne " +
      "je j tu il elle nous vous on mon ma mes ton ta tes son sa ses ce cet cette ces comment pourquoi quel " +
      "quelle quels quelles où moi toi me te se plus mais ou très aussi",
  ],
  [
    DE,
    "der die das den dem des ein eine einen einem einer und ist sind war ich du er sie es wir ihr mir mich " +
      "dir dich für mit von zu zum zur auf aus bei nach nicht kein keine wie was warum wer wo welche welcher " +
      "welches bitte kann kannst im am an in über mein meine meinen dein deine sich noch auch oder aber",
  ],
  [
    SW,
    "ni na ya wa kwa za la cha vya je gani nini kuhusu hii huu hiyo katika kama lakini au pia sana kila " +
      "yangu wangu changu zangu yako wako tafadhali vipi ngapi wapi lini nani mimi wewe yeye sisi ninyi wao " +
      "hapa huko kati hadi kutoka",
  ],
];

const WORDS = new Map<string, number>();
for (const [bit, list] of LISTS) {
  for (const w of list.split(" ")) WORDS.set(w, (WORDS.get(w) ?? 0) | bit);
}

const WORD = /[a-zß-öø-ÿœ]+/g;

interface LatinVote {
  /** Function-word hits per language, in BITS order. */
  hits: number[];
  words: number;
}

function functionWordVote(text: string): LatinVote {
  const hits = [0, 0, 0, 0, 0];
  const words = text.toLowerCase().match(WORD) ?? [];
  for (const w of words) {
    const mask = WORDS.get(w);
    if (mask === undefined) continue;
    for (let b = 0; b < 5; b++) if (mask & (1 << b)) hits[b]!++;
  }
  // Inverted marks are Spanish only.
  if (text.includes("¿") || text.includes("¡")) hits[1]! += 2;
  return { hits, words: words.length };
}

interface VoteOutcome {
  /** The language the vote settles on by itself, if any: a single language has the most hits. */
  winner: LatinLanguage | undefined;
  /** franc-min codes of the languages tied at the top (all five when no word matched). */
  tied: string[];
  top: number;
  words: number;
}

function vote(text: string): VoteOutcome {
  const { hits, words } = functionWordVote(text);
  let top = 0;
  for (const h of hits) if (h > top) top = h;
  const tied: string[] = [];
  for (let b = 0; b < 5; b++) if (top === 0 || hits[b] === top) tied.push(BITS[b]![2]);
  const winner = top > 0 && tied.length === 1 ? BITS[hits.indexOf(top)]![1] : undefined;
  return { winner, tied, top, words };
}

/** Whether the function-word vote settles `text` without calling franc (for the benchmark). */
export function decidedByVote(text: string): boolean {
  return vote(text).winner !== undefined;
}

/**
 * `text` is Latin-dominant and long enough to call. A single language with the most function-word
 * hits wins; otherwise franc-min decides among the languages tied at the top. Returns `und` when
 * nothing marks a language: no function word at all in three words or fewer (keyboard mashes such
 * as "asdf qwer zxcv", bare names).
 *
 * Measured on the test set (13 x 28 prompts; 140 Latin-script) and on 60 Latin-script prompts
 * written after this code (bench/language/holdout-latin.jsonl), Node 20, shared 2-core machine:
 *   franc-min/5 alone:        131/140 Latin, 52/60 holdout, ~54 us per Latin prompt
 *   word vote, then franc:    140/140 Latin, 60/60 holdout,  ~7 us per Latin prompt
 * (the vote alone settles most Latin prompts, so franc runs on few). The word lists cost about
 * 3 KB of the bundle.
 */
export function detectLatin(text: string): LatinLanguage | "und" {
  const { winner, tied, top, words } = vote(text);
  if (winner) return winner;
  if (top === 0 && words <= 3) return "und";
  const best = francAll(text, { only: tied, minLength: 1 })[0]?.[0];
  return BITS.find((x) => x[2] === best)?.[1] ?? "und";
}
