/**
 * Parallel prompts for the Lens tests, from data/lens-prompts/prompts.jsonl (one JSON object per line:
 * { id, split, source, text: { <lang>: string } }, rows aligned by id; see that folder's README).
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const LENS_PROMPTS_FILE = fileURLToPath(new URL("../../data/lens-prompts/prompts.jsonl", import.meta.url));

export const lensPromptsSkip: string | null = existsSync(LENS_PROMPTS_FILE)
  ? null
  : "data/lens-prompts/prompts.jsonl is not in this checkout";

interface PromptRow {
  id: string;
  split: string;
  text: Record<string, string>;
}

/** The first `n` rows of `split` that have every one of `languages`, as prompts per language (parallel by index). */
export function parallelPrompts(
  split: "probe" | "train" | "eval",
  languages: readonly string[],
  n: number,
): Record<string, string[]> {
  const out: Record<string, string[]> = Object.fromEntries(languages.map((l) => [l, []]));
  let taken = 0;
  for (const line of readFileSync(LENS_PROMPTS_FILE, "utf8").split("\n")) {
    if (taken >= n) break;
    if (line.trim() === "") continue;
    const row = JSON.parse(line) as PromptRow;
    if (row.split !== split || !languages.every((l) => typeof row.text[l] === "string" && row.text[l]!.length > 0))
      continue;
    for (const l of languages) out[l]!.push(row.text[l]!);
    taken++;
  }
  if (taken < n) throw new Error(`only ${taken} ${split} rows have all of ${languages.join(", ")}; asked for ${n}`);
  return out;
}
