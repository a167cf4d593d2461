import type { LanguageOrUnd } from "../../protocol/languages.js";

/** Placeholder until the detector lands: every text is undetermined. */
export function detectLanguage(_text: string): LanguageOrUnd {
  return "und";
}
