/**
 * `npm run add-key -- --scope client|admin [--name NAME] [--remote]`: creates an API key, stores
 * only its SHA-256 hash in D1 (local, or the deployed database with --remote), and prints the key
 * once. This is how the first admin key of a deployment is made; later keys can use POST /admin/keys.
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { sha256, sql, wrangler } from "../dev/local-stack.js";

const { values } = parseArgs({
  options: {
    scope: { type: "string", default: "client" },
    name: { type: "string", default: "" },
    remote: { type: "boolean", default: false },
  },
});
if (values.scope !== "client" && values.scope !== "admin") {
  console.error("--scope must be 'client' or 'admin'");
  process.exit(2);
}
const key = `lens-${values.scope === "admin" ? "admin-" : ""}${randomBytes(24).toString("base64url")}`;
const id = `key_${randomBytes(9).toString("base64url")}`;
const now = Math.floor(Date.now() / 1000);
const command =
  "INSERT INTO api_keys (id, key_hash, key_prefix, scope, name, created_at) VALUES " +
  `(${sql(id)}, ${sql(sha256(key))}, ${sql(key.slice(0, 12))}, ${sql(values.scope)}, ${sql(values.name ?? "")}, ${now});`;
wrangler(["d1", "execute", "DB", values.remote ? "--remote" : "--local", "--command", command]);
console.log(`${values.scope} key ${id} created (only its hash is stored; keep it now, it is not shown again):\n${key}`);
