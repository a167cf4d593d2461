/**
 * Files the backend writes (Lens jobs, probes): atomic writes (temporary file in the same folder, fsync, rename, fsync
 * of the folder) and the one check every name must pass before it is joined onto a folder.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, join } from "node:path";

/** Names of files a job writes: letters, digits, `.`, `_`, `-`; not starting with a dot; no separators. */
const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

export function isSafeName(name: string): boolean {
  return SAFE_NAME.test(name) && basename(name) === name;
}

/** `join(dir, name)` after checking that `name` is a plain file name (throws otherwise). */
export function safeJoin(dir: string, name: string): string {
  if (!isSafeName(name)) throw new RangeError(`unsafe file name ${JSON.stringify(name)}`);
  return join(dir, name);
}

/** Marks temporary files, so a restart can remove the ones a crash left. */
export const TMP_MARK = ".tmp-";

/** Writes `data` to `dir/name` atomically: a reader sees the old file or the whole new one, never part of it. */
export function writeFileAtomic(dir: string, name: string, data: Uint8Array | string): void {
  const path = safeJoin(dir, name);
  const tmp = join(dir, `${name}${TMP_MARK}${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`);
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  try {
    const fd = openSync(tmp, "wx", 0o644);
    try {
      let off = 0;
      while (off < bytes.byteLength) off += writeSync(fd, bytes, off, bytes.byteLength - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(dir);
}

/** Makes a rename in `dir` durable; a platform that cannot open folders (Windows) skips it. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // not supported here
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
