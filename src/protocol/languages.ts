/**
 * Languages the product detects and routes. Tags are BCP-47 primary language subtags.
 * `und` (undetermined) is the answer for text too short or unclear to call.
 */
export const LANGUAGES = ["en", "zh", "ja", "ko", "ar", "bn", "sw", "es", "fr", "de", "ru", "hi", "th"] as const;

export type Language = (typeof LANGUAGES)[number];
export type LanguageOrUnd = Language | "und";

const languageSet: ReadonlySet<string> = new Set(LANGUAGES);

export function isLanguage(tag: string): tag is Language {
  return languageSet.has(tag);
}
