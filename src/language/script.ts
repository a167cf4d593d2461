/**
 * Unicode-script census of a text: one pass over its UTF-16 code units, no regular expressions on
 * the hot path. Most of the product's languages are settled by their script alone (Hangul -> ko,
 * Thai -> th, ...); only Latin-script text needs a statistical detector.
 */

export interface ScriptCounts {
  latin: number;
  /** Han ideographs (shared by Chinese and Japanese). */
  han: number;
  /** Hiragana and katakana: only Japanese uses them. */
  kana: number;
  hangul: number;
  arabic: number;
  devanagari: number;
  bengali: number;
  thai: number;
  cyrillic: number;
  /** Letters of any other script (Greek, Hebrew, Tamil, ...): none of the product's languages. */
  other: number;
  /** Characters typical of code, markup and formulas: = ; { } [ ] ( ) < > / \ * + | # @ $ % & _ ^ ~ ` " : */
  codeSymbols: number;
}

const OTHER_LETTER = /\p{L}/u;

/** Code symbols as a 128-entry lookup table over ASCII. */
const CODE_SYMBOL = new Uint8Array(128);
for (const ch of '=;{}[]()<>/\\*+|#@$%&_^~`":') CODE_SYMBOL[ch.charCodeAt(0)] = 1;

export function countScripts(text: string): ScriptCounts {
  const c: ScriptCounts = {
    latin: 0,
    han: 0,
    kana: 0,
    hangul: 0,
    arabic: 0,
    devanagari: 0,
    bengali: 0,
    thai: 0,
    cyrillic: 0,
    other: 0,
    codeSymbols: 0,
  };
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const u = text.charCodeAt(i);
    if (u < 0x80) {
      if ((u >= 0x61 && u <= 0x7a) || (u >= 0x41 && u <= 0x5a)) c.latin++;
      else c.codeSymbols += CODE_SYMBOL[u]!;
    } else if (u < 0x250) {
      // Latin-1 and Latin Extended-A/B letters; skip the signs and punctuation below U+00C0, × and ÷.
      if (u >= 0xc0 && u !== 0xd7 && u !== 0xf7) c.latin++;
    } else if (u >= 0x0400 && u <= 0x052f) c.cyrillic++;
    else if (
      (u >= 0x0620 && u <= 0x064a) ||
      (u >= 0x066e && u <= 0x06d3) ||
      (u >= 0x06fa && u <= 0x06ff) ||
      (u >= 0x0750 && u <= 0x077f) ||
      (u >= 0x08a0 && u <= 0x08ff) ||
      (u >= 0xfb50 && u <= 0xfdff) ||
      (u >= 0xfe70 && u <= 0xfefc)
    )
      c.arabic++;
    else if (u >= 0x0900 && u <= 0x097f) {
      // Not the dandas (U+0964/5, shared with Bengali and others) nor the digits.
      if (u < 0x0964 || u > 0x096f) c.devanagari++;
    } else if (u >= 0x0980 && u <= 0x09ff) {
      if (u < 0x09e6 || u > 0x09ef) c.bengali++;
    } else if (u >= 0x0e00 && u <= 0x0e7f) {
      if (u < 0x0e50 || u > 0x0e5b) c.thai++;
    } else if (u >= 0x1e00 && u <= 0x1eff) c.latin++;
    else if (
      (u >= 0x3041 && u <= 0x309f) ||
      (u >= 0x30a1 && u <= 0x30fa) ||
      (u >= 0x30fc && u <= 0x30ff) ||
      (u >= 0x31f0 && u <= 0x31ff) ||
      (u >= 0xff66 && u <= 0xff9d)
    )
      c.kana++;
    else if (
      (u >= 0x4e00 && u <= 0x9fff) ||
      (u >= 0x3400 && u <= 0x4dbf) ||
      (u >= 0xf900 && u <= 0xfaff) ||
      u === 0x3005 ||
      u === 0x3007
    )
      c.han++;
    else if ((u >= 0xac00 && u <= 0xd7a3) || (u >= 0x1100 && u <= 0x11ff) || (u >= 0x3131 && u <= 0x318e)) c.hangul++;
    else if (u >= 0xd840 && u <= 0xd87f) {
      // High surrogate of CJK Extension B..F (U+20000-2FFFF): one ideograph for the pair.
      c.han++;
      i++;
    } else if (u >= 0xd800 && u <= 0xdbff) {
      // Other astral characters (emoji, ...): a letter only if Unicode says so.
      if (OTHER_LETTER.test(text.slice(i, i + 2))) c.other++;
      i++;
    } else if (u >= 0xff21 && u <= 0xff5a) {
      // Full-width Latin letters (Ａ-Ｚ, ａ-ｚ) as typed in CJK text.
      if (u <= 0xff3a || u >= 0xff41) c.latin++;
    } else if (OTHER_LETTER.test(text[i]!)) c.other++;
  }
  return c;
}
