/**
 * The base-model fingerprint every delta manifest must match: SHA-256 over the graph and its
 * external data files, so a delta trained on one set of weights is never applied to another.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";

async function hashFile(hash: ReturnType<typeof createHash>, path: string): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

/** `sha256:<hex>` of the ONNX file followed by its external data files (sorted by name). */
export async function modelFingerprint(onnxPath: string): Promise<string> {
  const hash = createHash("sha256");
  await hashFile(hash, onnxPath);
  const dir = dirname(onnxPath);
  const stem = basename(onnxPath);
  const data = readdirSync(dir)
    .filter((f) => f !== stem && f.startsWith(stem) && /\.(data|onnx_data|bin)$/.test(f))
    .sort();
  for (const f of data) {
    const p = join(dir, f);
    if (existsSync(p)) await hashFile(hash, p);
  }
  return `sha256:${hash.digest("hex")}`;
}
