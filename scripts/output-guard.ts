/**
 * Runs a command with its output passed through, and fails it when that output carries a line
 * that must never appear: workerd's report that a request hung ("...your Worker's code had hung
 * and would never generate a response"). workerd prints it and the request fails, but a test
 * waiting elsewhere may still pass; this makes it fail the run wherever it is printed (the workers
 * pool, `wrangler dev` under the end-to-end tests, Miniflare).
 */
import { spawn } from "node:child_process";

export const FORBIDDEN = [/code had hung/i];

/** Watches a stream of output chunks for forbidden lines, across chunk boundaries. */
export class OutputWatch {
  private tail = "";
  readonly found: string[] = [];

  push(chunk: string): void {
    const text = this.tail + chunk;
    const lines = text.split("\n");
    this.tail = lines.pop() ?? "";
    for (const line of lines) this.check(line);
  }

  end(): void {
    if (this.tail !== "") this.check(this.tail);
    this.tail = "";
  }

  private check(line: string): void {
    if (FORBIDDEN.some((re) => re.test(line))) this.found.push(line.trim().slice(0, 300));
  }
}

/**
 * Runs `command args`, copying its stdout and stderr through; resolves to its exit code, or 1 when
 * the output held a forbidden line (listed at the end).
 */
export function runGuarded(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  echo = true,
): Promise<{ code: number; found: string[] }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ["inherit", "pipe", "pipe"], env });
    const watch = new OutputWatch();
    // One watch for both streams would splice their lines; each gets its own.
    const watchErr = new OutputWatch();
    child.stdout.on("data", (d: Buffer) => {
      if (echo) process.stdout.write(d);
      watch.push(d.toString("utf8"));
    });
    child.stderr.on("data", (d: Buffer) => {
      if (echo) process.stderr.write(d);
      watchErr.push(d.toString("utf8"));
    });
    child.on("close", (code, signal) => {
      watch.end();
      watchErr.end();
      const found = [...watch.found, ...watchErr.found];
      let exit = code ?? (signal ? 1 : 0);
      if (found.length > 0 && echo) {
        process.stderr.write(`\n${found.length} forbidden line(s) in the output (a request hung in workerd):\n`);
        for (const line of found.slice(0, 10)) process.stderr.write(`  ${line}\n`);
      }
      if (found.length > 0 && exit === 0) exit = 1;
      resolve({ code: exit, found });
    });
  });
}
