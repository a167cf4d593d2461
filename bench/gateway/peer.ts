/**
 * This gateway against a peer in one run: blocks of the same scenarios alternate ABBA, so that both
 * see the same drift of a shared machine. Each gateway is measured against its own direct upstream
 * in the same block (added = through the gateway minus direct), and its process's CPU time over the
 * block is divided by the requests it served (each load's few warm-up requests included).
 */
import { cpuMs, settle } from "./proc.js";
import { type Stats, type Target, fmt, load, pool, printTable, signed } from "./load.js";

export interface Contender {
  /** The row's name, e.g. "Portkey 1.15.2 (Node)". */
  name: string;
  /** What "direct" is for this contender. */
  upstream: string;
  /** The process whose CPU time is its cost. */
  pid: number | undefined;
  direct(stream: boolean): Target;
  via(stream: boolean): Target;
  /** Whether the text read so far holds the first content, straight from the upstream and through the gateway. */
  directFirst(seen: string): boolean;
  viaFirst(seen: string): boolean;
  /** A fixed wait the gateway puts before its first streamed chunk, reported apart. */
  streamPauseMs?: number;
  /** What it does per request, for the notes under the table. */
  does: string;
}

const SCENARIOS = [
  { key: "json1", c: 1, n: 600, stream: false },
  { key: "json64", c: 64, n: 3200, stream: false },
  { key: "stream1", c: 1, n: 300, stream: true },
] as const;
type Key = (typeof SCENARIOS)[number]["key"];

interface Tally {
  direct: Record<Key, Stats[]>;
  via: Record<Key, Stats[]>;
  cpuMs: number | null;
  served: number;
  /** Per block: added p50 at 1 client and req/s at 64 clients, to show the spread between blocks. */
  blocks: string[];
}

const emptyRuns = (): Record<Key, Stats[]> => ({ json1: [], json64: [], stream1: [] });

async function runBlock(who: Contender, tally: Tally, scale: number): Promise<void> {
  const before = cpuMs(who.pid);
  let served = 0;
  let added1 = Number.NaN;
  let rps64 = Number.NaN;
  for (const s of SCENARIOS) {
    const total = Math.max(s.c, Math.round(s.n * scale));
    const d = await load(who.direct(s.stream), s.c, total, s.stream ? who.directFirst : undefined);
    const g = await load(who.via(s.stream), s.c, total, s.stream ? who.viaFirst : undefined);
    tally.direct[s.key].push(d);
    tally.via[s.key].push(g);
    served += g.sent;
    if (s.key === "json1") added1 = g.p50 - d.p50;
    if (s.key === "json64") rps64 = g.rps;
  }
  // Work a gateway queued after its replies (e.g. records written in waitUntil) belongs to the block.
  await settle(who.pid);
  const after = cpuMs(who.pid);
  tally.cpuMs = before === null || after === null || tally.cpuMs === null ? null : tally.cpuMs + (after - before);
  tally.served += served;
  tally.blocks.push(`${signed(added1)} ms / ${rps64.toFixed(0)} req/s`);
}

const errorsOf = (runs: Stats[]) => {
  const p = pool(runs);
  return p.errors === 0 ? "0" : `${p.errors} (${[...p.errorKinds].join(", ")})`;
};

const ratio = (a = Number.NaN, b = Number.NaN) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : "-");

function report(contenders: Contender[], tallies: Tally[], order: string): void {
  const rows = contenders.map((who, i) => {
    const t = tallies[i] as Tally;
    const d1 = pool(t.direct.json1);
    const g1 = pool(t.via.json1);
    const ds = pool(t.direct.stream1);
    const gs = pool(t.via.stream1);
    const firstAdded = gs.p50 - ds.p50;
    const pause = who.streamPauseMs;
    const g64 = pool(t.via.json64);
    const cpu = t.cpuMs === null || t.served === 0 ? Number.NaN : t.cpuMs / t.served;
    return {
      who,
      t,
      d1,
      d64: pool(t.direct.json64),
      rps: g64.rps,
      cpu,
      ds,
      cells: [
        who.name,
        `${signed(g1.p50 - d1.p50)} / ${signed(g1.p99 - d1.p99)}`,
        g64.rps.toFixed(0),
        pause
          ? `${signed(firstAdded)} (${signed(firstAdded - pause)} without its ${pause} ms pause)`
          : signed(firstAdded),
        fmt(cpu),
        Object.values(t.via).map(errorsOf).join(" / "),
      ],
    };
  });
  console.log(`\nThis gateway vs its peer, blocks alternating ${order}; latency in ms\n`);
  printTable(
    [
      "gateway",
      "added p50 / p99, 1 client",
      "req/s, 64 clients",
      "stream first content added, p50",
      "CPU ms/request",
      "errors (1 / 64 / stream)",
    ],
    rows.map((r) => r.cells),
  );
  console.log("\nDirect baselines (the same requests straight to each gateway's upstream, in the same blocks)\n");
  printTable(
    ["upstream", "p50 / p99, 1 client", "req/s, 64 clients", "stream first content, p50"],
    rows.map((r) => [r.who.upstream, `${fmt(r.d1.p50)} / ${fmt(r.d1.p99)}`, r.d64.rps.toFixed(0), fmt(r.ds.p50)]),
  );
  const n = (k: Key) => rows[0]?.t.via[k].reduce((s, r) => s + r.n, 0) ?? 0;
  console.log(
    [
      "",
      "- added p50 / p99: through the gateway minus direct, one client, a non-streaming reply read whole;",
      "  req/s: non-streaming replies completed per second through the gateway with 64 clients;",
      "  stream first content: from sending the request to the first content chunk (not the role chunk).",
      `- CPU ms/request: user+system CPU of the gateway's process over its blocks (from /proc), divided by`,
      "  the requests it served in them, warm-up included; the mix is that of the scenarios, mostly 64 clients.",
      `- per gateway: ${n("json1")} requests at 1 client, ${n("json64")} at 64, ${n("stream1")} streamed, over ${
        rows[0]?.t.blocks.length ?? 0
      } blocks.`,
      ...rows.map((r) => `- ${r.who.name}: ${r.who.does}`),
      ...rows.map((r) => `- ${r.who.name}, per block (added p50 at 1 client / req/s at 64): ${r.t.blocks.join(", ")}`),
      `- A/B: req/s at 64 clients ${ratio(rows[0]?.rps, rows[1]?.rps)}, CPU per request ${ratio(rows[0]?.cpu, rows[1]?.cpu)}.`,
    ].join("\n"),
  );
}

/** Runs `rounds` of ABBA (A = the first contender), prints one table, and returns the requests each was sent. */
export async function comparePeers(
  a: Contender,
  b: Contender,
  rounds: number,
  scale: number,
): Promise<[number, number]> {
  const tallies = [a, b].map(
    (): Tally => ({ direct: emptyRuns(), via: emptyRuns(), cpuMs: 0, served: 0, blocks: [] }),
  ) as [Tally, Tally];
  // Unmeasured: the gateway in Miniflare has served the harness tables already; the peer starts cold.
  const warmed = [0, 0];
  for (const [i, who] of [a, b].entries()) {
    warmed[i] = (await load(who.via(false), 64, 2000)).sent + (await load(who.via(true), 8, 80, who.viaFirst)).sent;
  }
  const order = "ABBA".repeat(rounds);
  for (const [i, letter] of [...order].entries()) {
    const who = letter === "A" ? a : b;
    console.error(`[peer] block ${i + 1}/${order.length}: ${who.name}`);
    await runBlock(who, letter === "A" ? tallies[0] : tallies[1], scale);
  }
  report([a, b], tallies, `${order} (A = ${a.name}, B = ${b.name})`);
  return [tallies[0].served + (warmed[0] ?? 0), tallies[1].served + (warmed[1] ?? 0)];
}
