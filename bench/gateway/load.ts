/** The bench's load generator: closed-loop clients over keep-alive connections, timed in this process. */
import { Agent, request } from "node:http";
import { performance } from "node:perf_hooks";
import { percentile } from "../../dev/percentile.js";

export interface Target {
  port: number;
  path: string;
  headers: Record<string, string>;
  /** A POST body; none means GET. */
  body?: (i: number) => string;
}

export interface Stats {
  n: number;
  errors: number;
  /** What the failures were, e.g. "status 503" or a socket error code. */
  errorKinds: Set<string>;
  p50: number;
  p99: number;
  rps: number;
  /** Every timed request's milliseconds, sorted, so that runs can be pooled. */
  times: number[];
  /** Seconds of the timed part. */
  seconds: number;
  /** Requests sent, warm-up and failures included: what the server did work for. */
  sent: number;
}

/**
 * One request; resolves with milliseconds to the whole body, or with `firstContent` to the first
 * content. Either way only once the body has ended: a stream cut off after its first chunk would be
 * a client disconnect, which the gateway handles (and records) differently.
 */
function timeOne(agent: Agent, t: Target, i: number, firstContent?: (chunk: string) => boolean): Promise<number> {
  const body = t.body?.(i);
  const headers = body === undefined ? t.headers : { ...t.headers, "content-length": String(Buffer.byteLength(body)) };
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let first: number | undefined;
    const req = request(
      { host: "127.0.0.1", port: t.port, path: t.path, method: body === undefined ? "GET" : "POST", agent, headers },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`status ${res.statusCode}`));
          return;
        }
        res.setEncoding("utf8");
        let seen = "";
        res.on("data", (chunk: string) => {
          if (firstContent && first === undefined) {
            seen += chunk;
            if (firstContent(seen)) first = performance.now() - start;
          }
        });
        res.on("end", () => resolve(first ?? performance.now() - start));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Stats of timed requests, from one run or several pooled. */
function summarize(times: number[], seconds: number, errors = 0, errorKinds = new Set<string>(), sent = 0): Stats {
  const sorted = [...times].sort((a, b) => a - b);
  return {
    n: sorted.length,
    errors,
    errorKinds,
    p50: percentile(sorted, 50) ?? Number.NaN,
    p99: percentile(sorted, 99) ?? Number.NaN,
    rps: sorted.length / seconds,
    times: sorted,
    seconds,
    sent,
  };
}

/** Runs of the same kind as one: all their requests and all their timed seconds. */
export function pool(runs: Stats[]): Stats {
  return summarize(
    runs.flatMap((r) => r.times),
    runs.reduce((s, r) => s + r.seconds, 0),
    runs.reduce((s, r) => s + r.errors, 0),
    new Set(runs.flatMap((r) => [...r.errorKinds])),
    runs.reduce((s, r) => s + r.sent, 0),
  );
}

export async function load(
  t: Target,
  concurrency: number,
  total: number,
  firstContent?: (s: string) => boolean,
): Promise<Stats> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const times: number[] = [];
  let errors = 0;
  const errorKinds = new Set<string>();
  let next = 0;
  // Warm-up: connections, JIT, isolate caches.
  await Promise.all(Array.from({ length: concurrency }, (_, i) => timeOne(agent, t, i, firstContent).catch(() => 0)));
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        try {
          times.push(await timeOne(agent, t, i, firstContent));
        } catch (err) {
          errors++;
          errorKinds.add((err as NodeJS.ErrnoException).code ?? (err as Error).message);
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return summarize(times, seconds, errors, errorKinds, concurrency + total);
}

export const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "-");
export const signed = (n: number) => (Number.isFinite(n) ? (n >= 0 ? "+" : "") + n.toFixed(2) : "-");

/** Prints a Markdown table with padded columns. */
export function printTable(header: string[], lines: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)));
  const print = (cells: string[]) =>
    console.log(`| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`);
  print(header);
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const l of lines) print(l);
}
