/**
 * Which language a chat request is in: the caller's `x-lens-language` header when given, else the
 * detector's answer on the conversation's user text (never the system prompt, which is often
 * English boilerplate whatever language the user writes in).
 */
import { LANGUAGES, type LanguageOrUnd, isLanguage } from "../../protocol/languages.js";
import type { ChatMessage } from "../../protocol/openai.js";
import { invalidRequest } from "../errors.js";
import { DETECT_MAX_CHARS, detectLanguage } from "../../language/detect.js";

export interface LanguageChoice {
  language: LanguageOrUnd;
  source: "header" | "detected";
}

function parseLanguageHeader(value: string): LanguageOrUnd {
  const primary = value.trim().toLowerCase().split(/[-_]/)[0] ?? "";
  if (primary === "und" || isLanguage(primary)) return primary;
  throw invalidRequest(
    `Unsupported language '${value}' in the x-lens-language header; supported: ${LANGUAGES.join(", ")} (or und).`,
    "x-lens-language",
    "unsupported_language",
  );
}

export function chooseLanguage(messages: readonly ChatMessage[], header: string | undefined): LanguageChoice {
  if (header !== undefined && header.trim() !== "") return { language: parseLanguageHeader(header), source: "header" };
  const user = messages.filter((m) => m.role === "user" && m.content.trim() !== "");
  const last = user.at(-1);
  if (!last) return { language: "und", source: "detected" };
  // One cap decides which text counts (the detector's): the start of the last turn ...
  const language = detectLanguage(last.content);
  if (language !== "und" || user.length === 1) return { language, source: "detected" };
  // ... or, when the last turn alone is too short to call ("ok", "thanks"), the end of the user's
  // recent turns together: what they wrote last.
  const recent = user
    .map((m) => m.content)
    .join("\n")
    .slice(-DETECT_MAX_CHARS);
  return { language: detectLanguage(recent), source: "detected" };
}

export type LensMode = "on" | "off";

export function parseLensMode(value: string | undefined): LensMode {
  if (value === undefined || value.trim() === "") return "on";
  const mode = value.trim().toLowerCase();
  if (mode === "on" || mode === "off") return mode;
  throw invalidRequest(
    `Invalid x-lens-mode header '${value}'; expected 'on' or 'off'.`,
    "x-lens-mode",
    "invalid_header",
  );
}
