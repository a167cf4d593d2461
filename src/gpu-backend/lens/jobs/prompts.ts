/**
 * Held-out parallel prompts for Lens jobs, from data/lens-prompts/prompts.jsonl (one JSON object per
 * line: { id, split, source, text: { <lang>: string } }, rows aligned by id; see that folder's README).
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export type PromptSplit = "probe" | "train" | "eval";

export const DEFAULT_PROMPTS_FILE = fileURLToPath(
  new URL("../../../../data/lens-prompts/prompts.jsonl", import.meta.url),
);

interface PromptRow {
  id: string;
  split: string;
  text: Record<string, string>;
}

const cache = new Map<string, PromptRow[]>();

function rows(file: string): PromptRow[] {
  let r = cache.get(file);
  if (r === undefined) {
    if (!existsSync(file)) throw new Error(`the prompt file ${file} is not there`);
    r = [];
    for (const line of readFileSync(file, "utf8").split("\n")) {
      if (line.trim() === "") continue;
      const row = JSON.parse(line) as PromptRow;
      if (typeof row.split === "string" && row.text !== null && typeof row.text === "object") r.push(row);
    }
    cache.set(file, r);
  }
  return r;
}

/**
 * The first `n` rows of `split` that have every one of `languages` (fewer when the split has fewer),
 * as prompts per language, parallel by index. Throws when no row has them all.
 */
export function splitPrompts(
  split: PromptSplit,
  languages: readonly string[],
  n: number,
  file = DEFAULT_PROMPTS_FILE,
): Record<string, string[]> {
  const out: Record<string, string[]> = Object.fromEntries(languages.map((l) => [l, []]));
  let taken = 0;
  for (const row of rows(file)) {
    if (taken >= n) break;
    if (row.split !== split || !languages.every((l) => typeof row.text[l] === "string" && row.text[l]!.length > 0))
      continue;
    for (const l of languages) out[l]!.push(row.text[l]!);
    taken++;
  }
  if (taken === 0) throw new RangeError(`no ${split} row has all of ${languages.join(", ")}`);
  return out;
}
