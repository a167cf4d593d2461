/** The models backend tests run on: the embedded default model and the real-export fp16 fixture. */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const EMBEDDED_MODEL_DIR = fileURLToPath(new URL("../../models/lens-tiny-chat", import.meta.url));
export const FIXTURE_MODEL_DIR = fileURLToPath(new URL("../fixtures/tiny-random-llama-fp16-genai", import.meta.url));

export interface ModelCase {
  name: string;
  dir: string;
  /** Why the case is skipped, or null when its files are here. */
  skip: string | null;
}

export const MODEL_CASES: ModelCase[] = [
  {
    name: "embedded lens-tiny-chat (fp32, plain export)",
    dir: EMBEDDED_MODEL_DIR,
    skip: existsSync(`${EMBEDDED_MODEL_DIR}/genai_config.json`)
      ? null
      : "models/lens-tiny-chat is not in this checkout",
  },
  {
    name: "tiny-random-llama fixture (fp16, genai export, external data)",
    dir: FIXTURE_MODEL_DIR,
    skip: existsSync(`${FIXTURE_MODEL_DIR}/genai_config.json`)
      ? null
      : "test/fixtures/tiny-random-llama-fp16-genai is not in this checkout",
  },
];
