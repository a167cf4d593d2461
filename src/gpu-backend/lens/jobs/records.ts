/**
 * Job records on disk and their recovery after a restart.
 *
 * Under the jobs folder (LENS_JOBS_DIR, default `.lens/jobs` in the repository, else in the working
 * directory), each job has a folder named by its id holding `job.json`, the record (LensJobRecord),
 * rewritten atomically at each change of state, next to its artifact files (artifacts.ts).
 *
 * On start: a job found "running" was cut off by a crash or a restart; it becomes "failed"
 * ("interrupted by a restart") and every file in its folder but the record is removed. Jobs found
 * "queued" are queued again. Temporary files left anywhere are removed.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { JobId, LensJobRecord, LensJobRequest } from "../../../protocol/lens-jobs.js";
import { fsyncDir, isSafeName, safeJoin, TMP_MARK, writeFileAtomic } from "../../files.js";

export const JOB_FILE = "job.json";

/** LENS_JOBS_DIR, else `.lens/jobs` in this repository (else in the working directory). */
export function defaultJobsDir(env: Record<string, string | undefined> = process.env): string {
  const fromEnv = env["LENS_JOBS_DIR"];
  if (fromEnv !== undefined && fromEnv !== "") return resolve(fromEnv);
  const repo = fileURLToPath(new URL("../../../../", import.meta.url));
  const base = existsSync(join(repo, "package.json")) ? repo : process.cwd();
  return join(base, ".lens", "jobs");
}

export const nowIso = () => new Date().toISOString();

/** A job's folder; the id is checked again here, so no other name is ever joined onto the jobs folder. */
export function jobDir(root: string, id: string): string {
  JobId.parse(id);
  return safeJoin(root, id);
}

export function writeRecord(root: string, record: LensJobRecord): void {
  writeFileAtomic(jobDir(root, record.id), JOB_FILE, `${JSON.stringify(record, null, 2)}\n`);
}

/** Removes everything in the job's folder but its record (and temporary files of the record). */
export function removePartial(root: string, id: string): void {
  const dir = jobDir(root, id);
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) if (name !== JOB_FILE) rmSync(join(dir, name), { recursive: true, force: true });
}

export interface RecoveredJob {
  record: LensJobRecord;
  request: LensJobRequest;
}

/** Reads the jobs folder at start-up (see the file comment); oldest first. */
export function recoverJobs(root: string, log: (line: string) => void): RecoveredJob[] {
  const found: RecoveredJob[] = [];
  for (const name of readdirSync(root)) {
    if (!JobId.safeParse(name).success) continue; // not ours: leave it alone
    const dir = join(root, name);
    if (!statSync(dir).isDirectory()) continue;
    for (const f of readdirSync(dir)) if (f.includes(TMP_MARK)) rmSync(join(dir, f), { force: true });
    const recordPath = join(dir, JOB_FILE);
    if (!existsSync(recordPath)) {
      // Created, then cut off before its first record was in place: nothing to keep.
      rmSync(dir, { recursive: true, force: true });
      continue;
    }
    let record: LensJobRecord;
    let request: LensJobRequest;
    try {
      record = LensJobRecord.parse(JSON.parse(readFileSync(recordPath, "utf8")));
      request = LensJobRequest.parse(record.request);
      if (record.id !== name) throw new Error(`it names job ${record.id}`);
    } catch (err) {
      log(`skipping ${name}: its record cannot be read (${(err as Error).message})`);
      continue;
    }
    if (record.state === "running") {
      removePartial(root, name);
      record.state = "failed";
      record.error = { message: "interrupted by a restart" };
      record.finished_at = nowIso();
      record.artifact = null;
      writeRecord(root, record);
      log(`${name} was running: marked failed (interrupted by a restart)`);
    } else if (record.state === "succeeded" && record.artifact !== null) {
      const names = [record.artifact.tensors, record.artifact.manifest].filter((n): n is string => n !== null);
      if (!names.every((n) => isSafeName(n) && existsSync(join(dir, n)))) {
        log(`${name}: its artifact files are missing`);
      }
    }
    found.push({ record, request });
  }
  found.sort((a, b) =>
    a.record.created_at < b.record.created_at ? -1 : a.record.created_at > b.record.created_at ? 1 : 0,
  );
  fsyncDir(root);
  return found;
}
