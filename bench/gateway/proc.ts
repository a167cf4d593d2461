/**
 * CPU time of a process from Linux's /proc, to compare what each gateway spends per request. Where
 * /proc is missing (not Linux), every reading is null and the bench prints "-".
 */
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";

/** Clock ticks per second of /proc's counters (almost always 100). */
const TICKS_PER_SECOND = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim()) || 100;

/** The fields of /proc/<pid>/stat after the command name, which may itself hold spaces and parentheses. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** User plus system CPU milliseconds the process (all its threads) has used so far. */
export function cpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  const f = statFields(pid);
  // After the name: state, ppid, ...; utime and stime are the 14th and 15th fields of the whole line.
  if (!f) return null;
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS_PER_SECOND;
}

/** The pid of a direct child of this process running `command` (e.g. the workerd Miniflare spawned). */
export function childPid(command: string): number | undefined {
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((p) => /^\d+$/.test(p));
  } catch {
    return undefined;
  }
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (name === command && Number(statFields(Number(p))?.[1]) === process.pid) return Number(p);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** Waits until the process has used no CPU for `quietMs` (work it queued after its replies), at most `maxMs`. */
export async function settle(pid: number | undefined, quietMs = 300, maxMs = 5_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  let last = cpuMs(pid);
  while (last !== null && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, quietMs));
    const now = cpuMs(pid);
    if (now === last) return;
    last = now;
  }
}
