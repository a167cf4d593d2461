/** The load runs' prompts: the language test set, languages interleaved. */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export interface Prompt {
  lang: string;
  text: string;
}

export function loadPrompts(): Prompt[] {
  const path = fileURLToPath(new URL("../../test/fixtures/language-prompts.jsonl", import.meta.url));
  const all = readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Prompt)
    .filter((p) => p.lang !== "und");
  // Interleave the languages, so that every stretch of requests is mixed.
  const byLang = new Map<string, Prompt[]>();
  for (const p of all) byLang.set(p.lang, [...(byLang.get(p.lang) ?? []), p]);
  const out: Prompt[] = [];
  for (let i = 0; out.length < all.length; i++)
    for (const list of byLang.values()) {
      const p = list[i];
      if (p) out.push(p);
    }
  return out;
}
