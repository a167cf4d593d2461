/**
 * `npm test` after the type checks: vitest, with its whole output watched for workerd's "code had
 * hung" report (scripts/output-guard.ts). Arguments go to `vitest run`.
 */
import { fileURLToPath } from "node:url";
import { runGuarded } from "./output-guard.js";

const vitest = fileURLToPath(new URL("../node_modules/.bin/vitest", import.meta.url));
// Piped output is not a terminal: keep vitest's colours when ours is one.
const env = process.stdout.isTTY ? { ...process.env, FORCE_COLOR: process.env["FORCE_COLOR"] ?? "1" } : process.env;
const { code } = await runGuarded(vitest, ["run", ...process.argv.slice(2)], env);
process.exit(code);
