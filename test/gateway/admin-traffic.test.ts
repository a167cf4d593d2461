/** GET /admin/traffic: hourly per-language aggregates (base vs edited) computed in SQL. */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { TrafficPoint } from "../../src/gateway/services/console/traffic.js";
import { gatewayFetch, newKey } from "./helpers.js";

let admin: string;
let client: string;
beforeAll(async () => {
  admin = await newKey("admin");
  client = await newKey("client");
});

const get = (path: string, key: string | null = admin) =>
  gatewayFetch()(`http://gateway.test${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });

describe("traffic per language and hour", () => {
  it("groups requests by hour, language and base vs edited, with fidelity, errors and p95", async () => {
    const hour = Math.floor(Date.now() / 3_600_000) * 3600;
    // This hour, Thai, edited: 20 rows, latencies 10..200 ms, 15 matched of 18 measured, 2 errors.
    // This hour, Thai, base: 3 rows. Two hours ago, Thai, edited: 4 rows. 30 hours ago: outside 24 h.
    const rows: [string, string, string | null, number, number | null, number, string, number][] = [];
    for (let i = 0; i < 20; i++)
      rows.push([
        `tr-a-${i}`,
        "th",
        "th-delta",
        (i + 1) * 10,
        i < 15 ? 1 : i < 18 ? 0 : null,
        i === 3 ? 502 : 200,
        i === 7 ? "error" : "stop",
        hour + i,
      ]);
    for (let i = 0; i < 3; i++) rows.push([`tr-b-${i}`, "th", null, 500 + i, 1, 200, "stop", hour + 60]);
    for (let i = 0; i < 4; i++) rows.push([`tr-c-${i}`, "th", "th-delta", 40, 0, 200, "stop", hour - 2 * 3600 + 5]);
    rows.push(["tr-d-0", "th", "th-delta", 40, 0, 200, "stop", hour - 30 * 3600]);
    await env.DB.batch(
      rows.map(([id, language, delta, ms, match, status, finish, at]) =>
        env.DB.prepare(
          `INSERT INTO requests (id, key_id, language, delta_id, model, status, total_ms, finish_reason, language_match, stream, created_at)
           VALUES (?1, 'k', ?2, ?3, 'm', ?4, ?5, ?6, ?7, 0, ?8)`,
        ).bind(id, language, delta, status, ms, finish, match, at),
      ),
    );
    const res = await get("/admin/traffic");
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      object: string;
      hours: number;
      since: number;
      until: number;
      points: TrafficPoint[];
    };
    expect(body).toMatchObject({ object: "traffic", hours: 24, until: hour + 3600, since: hour + 3600 - 24 * 3600 });
    const thai = body.points.filter((p) => p.language === "th");
    expect(thai.map((p) => [p.hour - hour, p.edited, p.requests])).toEqual([
      [-7200, true, 4],
      [0, false, 3],
      [0, true, 20],
    ]);
    const now = thai[2]!;
    // p95 by nearest rank of 20 values 10..200: rank 19 -> 190 ms.
    expect(now).toMatchObject({ errors: 2, measured: 18, matched: 15, p95_ms: 190, mean_ms: 105 });
    expect(now.fidelity).toBeCloseTo(15 / 18, 12);
    expect(thai[1]).toMatchObject({ edited: false, p95_ms: 502, fidelity: 1 });

    const wide = (await (await get("/admin/traffic?hours=48")).json()) as { points: TrafficPoint[] };
    expect(wide.points.filter((p) => p.language === "th").map((p) => p.requests)).toEqual([1, 4, 3, 20]);
  });

  it("is admin-only and checks its query", async () => {
    expect((await get("/admin/traffic", null)).status).toBe(401);
    expect((await get("/admin/traffic", client)).status).toBe(403);
    for (const q of ["hours=0", "hours=169", "hours=abc", "hours=1.5", "days=2"]) {
      const res = await get(`/admin/traffic?${q}`);
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { type: string; code: string } };
      expect(body.error).toMatchObject({ type: "invalid_request_error", code: "invalid_query" });
    }
  });
});
