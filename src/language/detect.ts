import type { LanguageOrUnd } from "../protocol/languages.js";
import { detectLatin } from "./latin.js";
import { countScripts } from "./script.js";

/** Only the start of a long text is looked at: enough to call the language, and bounded time. */
export const DETECT_MAX_CHARS = 512;
/** URLs and e-mail addresses say nothing about the language around them. */
const URL_OR_EMAIL = /\b(?:https?:\/\/|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+/gi;
/**
 * Letters must make up at least this share of letters + code symbols (see ScriptCounts.codeSymbols),
 * else the text is code, markup, JSON or a formula: `und`. Natural prompts score 0.9-1.0 even with
 * a quoted phrase or "$1,000 at 5%"; `const x = items[i] + 1;` scores 0.7, `{"id": 7}` under 0.5.
 */
const MIN_LETTER_SHARE = 0.75;
/** Fewest letters in a Latin-script text to call it ("ok", "lol", "hmm" are `und`). */
const MIN_LATIN_LETTERS = 6;
/** Fewest weighted letters in another script: two CJK/Hangul characters, four letters elsewhere. */
const MIN_OTHER_LETTERS = 4;

/**
 * The language of a short chat prompt, or `und` when it is too short or unclear.
 *
 * 1. Script census (script.ts). A non-Latin script decides when it has at least a third as many
 *    letters as the Latin script, CJK and Hangul characters counting double (each stands for a
 *    syllable or more): people writing Thai, Hindi or Chinese embed English product names and terms
 *    ("ทำ Pivot Table ใน Excel ยังไง"), while English prompts rarely carry more than a quoted word of
 *    another script. Han with any kana -> ja, Han alone -> zh, Hangul -> ko, Arabic script -> ar,
 *    Devanagari -> hi, Bengali -> bn, Thai -> th, Cyrillic -> ru; any other script -> und.
 * 2. Latin script: function-word vote, then franc-min among en/es/fr/de/sw (latin.ts).
 */
export function detectLanguage(text: string): LanguageOrUnd {
  let t = text.length > DETECT_MAX_CHARS ? text.slice(0, DETECT_MAX_CHARS) : text;
  if (t.includes("://") || t.includes("@") || t.includes("www.")) t = t.replace(URL_OR_EMAIL, " ");
  const c = countScripts(t);

  const groups: ReadonlyArray<readonly [LanguageOrUnd, number]> = [
    [c.kana > 0 ? "ja" : "zh", 2 * (c.han + c.kana)],
    ["ko", 2 * c.hangul],
    ["ar", c.arabic],
    ["hi", c.devanagari],
    ["bn", c.bengali],
    ["th", c.thai],
    ["ru", c.cyrillic],
    ["und", c.other],
  ];
  let best: LanguageOrUnd = "und";
  let bestCount = 0;
  let nonLatin = 0;
  for (const [lang, count] of groups) {
    nonLatin += count;
    if (count > bestCount) {
      best = lang;
      bestCount = count;
    }
  }
  const letters = nonLatin + c.latin;
  if (letters === 0 || letters < MIN_LETTER_SHARE * (letters + c.codeSymbols)) return "und";

  if (bestCount > 0 && 3 * bestCount >= c.latin) {
    return bestCount >= MIN_OTHER_LETTERS ? best : "und";
  }
  if (c.latin < MIN_LATIN_LETTERS) return "und";
  return detectLatin(t);
}
