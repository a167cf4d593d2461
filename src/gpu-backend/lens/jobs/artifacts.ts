/**
 * A job's artifact files, next to its record: `<artifact id>.safetensors` (probe or delta tensors) and
 * `<artifact id>.json` (its manifest; an eval job writes only this, its report). Each is written
 * atomically, tensors first; the record that names them is written after, so a record that says
 * "succeeded" has its files.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { DeltaId } from "../../../protocol/delta.js";
import type { LensJobArtifact, LensJobRecord } from "../../../protocol/lens-jobs.js";
import type { DeltaFile } from "../probe/subspace-delta.js";
import { safeJoin, writeFileAtomic } from "../../files.js";
import { LensJobError, type WorkOutput } from "./work.js";

export type ArtifactPart = "tensors" | "manifest";

/** Tensors first, then the manifest, each atomically, into the job's folder. */
export function writeArtifact(dir: string, a: WorkOutput["artifact"]): LensJobArtifact {
  DeltaId.parse(a.id);
  const manifestText = `${JSON.stringify(a.manifest, null, 2)}\n`;
  const tensorsName = a.tensors === null ? null : `${a.id}.safetensors`;
  const manifestName = `${a.id}.json`;
  if (tensorsName !== null && a.tensors !== null) writeFileAtomic(dir, tensorsName, a.tensors);
  writeFileAtomic(dir, manifestName, manifestText);
  const main = a.tensors ?? new TextEncoder().encode(manifestText);
  return {
    kind: a.kind,
    id: a.id,
    tensors: tensorsName,
    manifest: manifestName,
    bytes: main.byteLength,
    sha256: sha256(main),
  };
}

/** The path of a finished job's artifact file in its folder `dir`. Throws not_found when there is none. */
export function artifactFile(
  dir: string,
  record: LensJobRecord,
  part: ArtifactPart,
): { path: string; name: string; artifact: LensJobArtifact } {
  const { id } = record;
  const a = record.artifact;
  if (record.state !== "succeeded" || a === null)
    throw new LensJobError("not_found", `job ${id} has no artifact (it is ${record.state})`);
  const name = part === "tensors" ? a.tensors : a.manifest;
  if (name === null) throw new LensJobError("not_found", `job ${id}'s artifact has no ${part} file`);
  const path = safeJoin(dir, name);
  if (!existsSync(path)) throw new LensJobError("not_found", `job ${id}'s ${part} file is gone`);
  return { path, name, artifact: a };
}

/** A delta job's artifact read back: its tensors and manifest. */
export function readDeltaArtifact(dir: string, record: LensJobRecord): DeltaFile {
  const tensors = artifactFile(dir, record, "tensors");
  const manifest = artifactFile(dir, record, "manifest");
  return {
    bytes: new Uint8Array(readFileSync(tensors.path)),
    manifest: JSON.parse(readFileSync(manifest.path, "utf8")) as DeltaFile["manifest"],
  };
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
