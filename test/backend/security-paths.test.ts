/**
 * No id or path-like value from a request reaches the backend's file system unchecked. Every route
 * that takes one (delta ids, job ids, artifact parts, job references in bodies, the delta a
 * generation names) gets traversal attempts and odd ids, in process (`app.request`) and over real
 * HTTP where a path is sent as written (no client-side normalisation); each must answer 400 or 404
 * (409 "delta_not_loaded" for a generation) with a clean `{error: {code, message}}`, and the jobs
 * folder and a sentinel next to it must be exactly as they were.
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { serve, type ServerType } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackendApp } from "../../src/gpu-backend/app.js";
import { LensJobRunner } from "../../src/gpu-backend/lens/jobs/runner.js";
import { loadModel } from "../../src/gpu-backend/load.js";
import { GENERATE_PATH, backendAuthorization } from "../../src/protocol/backend.js";
import { DELTAS_PATH } from "../../src/protocol/delta.js";
import { LENS_PATH } from "../../src/protocol/lens-jobs.js";
import { makeDelta } from "../../dev/make-delta.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

const embedded = MODEL_CASES[0]!;
const SECRET = "a-shared-secret-for-the-path-tests";
const AUTH = { authorization: backendAuthorization(SECRET) };
const SENTINEL_TEXT = "SENTINEL-must-never-be-served-3f9c";

/** Ids a caller might try, as strings (URL-encoded when they go into a path). */
const ODD_IDS: string[] = [
  "../x",
  "../../etc/passwd",
  "..%2F..%2Fetc%2Fpasswd",
  "%2e%2e%2f%2e%2e%2fsentinel.txt",
  "/etc/passwd",
  "//etc/passwd",
  "C:\\Windows\\win.ini",
  "..\\..\\sentinel.txt",
  "jobs\\..\\..\\sentinel.txt",
  "a\u0000b",
  "\u0000",
  "job-abc123-0000aaaa\u0000",
  ".",
  "..",
  "...",
  "....",
  ".hidden",
  "x".repeat(129),
  "x".repeat(10_000),
  "job\u2010abc123\u20100000aaaa", // hyphen lookalikes
  "job-abc123-0000aaaa/../../sentinel.txt",
  "\uff0e\uff0e\uff0fsentinel.txt", // fullwidth ../
  "\u2024\u2024/sentinel.txt", // one-dot leaders
  "..\u2215sentinel.txt", // division slash
  "job-ABC123-0000AAAA",
  " ",
  "%",
  "$(touch pwned)",
];

/** Paths sent as written, for the routes that take an id in the path: encoded separators, dot segments, bad escapes. */
const RAW_SUFFIXES = [
  "%2e%2e",
  "%2E%2E%2F%2E%2E%2Fsentinel.txt",
  "..%2f..%2fsentinel.txt",
  "..%5c..%5csentinel.txt",
  "%00",
  "a%00b",
  "%E0%A4%A",
  "%ff%fe",
  "..;/sentinel.txt",
  "%252e%252e%252fsentinel.txt",
  "job-abc123-0000aaaa%2f..%2f..%2fsentinel.txt",
];

const VALID_JOB = "job-abc123-0000aaaa";
/** A job whose record on disk was tampered with: its artifact names point outside its folder. */
const TAMPERED_JOB = "job-abc124-0000bbbb";

/** Every file under `dir` with its size and content hash. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) {
        out[`${relative(dir, p)}/`] = "dir";
        walk(p);
      } else out[relative(dir, p)] = `${st.size}:${createHash("sha256").update(readFileSync(p)).digest("hex")}`;
    }
  };
  walk(dir);
  return out;
}

function plantJob(
  jobsDir: string,
  id: string,
  artifact: { tensors: string | null; manifest: string },
  files: Record<string, string>,
): void {
  const dir = join(jobsDir, id);
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const at = "2026-01-01T00:00:00.000Z";
  const record = {
    id,
    kind: "subspace",
    state: "succeeded",
    request: {
      kind: "subspace",
      probe: "job-abc000-00000000",
      language: "sw",
      layers: [0],
      lambda: 1,
      alpha: 1,
      dtype: "float32",
      load: false,
    },
    created_at: at,
    started_at: at,
    finished_at: at,
    progress: null,
    error: null,
    artifact: { kind: "delta", id: "planted-delta", ...artifact, bytes: 4, sha256: "0".repeat(64) },
    result: {},
  };
  writeFileSync(join(dir, "job.json"), JSON.stringify(record));
}

const STACK_MARKERS = ["    at ", ".ts:", "node_modules", "Error:"];

interface Answer {
  status: number;
  text: string;
}

/** A refusal: 400/404 (or what `allowed` adds), exactly `{error: {code, message}}`, nothing leaked. */
function expectClean(a: Answer, where: string, allowed: number[] = [400, 404]): { code: string; message: string } {
  expect(allowed, `${where}: status ${a.status}: ${a.text.slice(0, 300)}`).toContain(a.status);
  let body: { error: { code: string; message: string } };
  try {
    body = JSON.parse(a.text) as typeof body;
  } catch {
    throw new Error(`${where}: not JSON: ${a.text.slice(0, 200)}`);
  }
  expect(Object.keys(body), where).toEqual(["error"]);
  expect(Object.keys(body.error).sort(), where).toEqual(["code", "message"]);
  expect(typeof body.error.code, where).toBe("string");
  expect(typeof body.error.message, where).toBe("string");
  for (const marker of STACK_MARKERS)
    expect(a.text.includes(marker), `${where}: '${marker}' in ${a.text.slice(0, 300)}`).toBe(false);
  expect(a.text, where).not.toContain(SENTINEL_TEXT);
  expect(a.text, where).not.toContain(SECRET);
  expect(a.text, where).not.toContain(tmpdir());
  return body.error;
}

describe.skipIf(embedded.skip !== null)(
  "backend: ids and paths from requests never reach the file system unchecked",
  () => {
    const root = mkdtempSync(join(tmpdir(), "lens-paths-"));
    const jobsDir = join(root, "area", "jobs");
    let app: ReturnType<typeof createBackendApp>;
    let model: Awaited<ReturnType<typeof loadModel>>;
    let jobs: LensJobRunner;
    let server: ServerType;
    let port = 0;
    let before: Record<string, string>;

    beforeAll(async () => {
      mkdirSync(jobsDir, { recursive: true });
      writeFileSync(join(root, "sentinel.txt"), SENTINEL_TEXT);
      writeFileSync(join(root, "area", "sentinel.txt"), SENTINEL_TEXT);
      plantJob(
        jobsDir,
        VALID_JOB,
        { tensors: "planted-delta.safetensors", manifest: "planted-delta.json" },
        {
          "planted-delta.safetensors": "SAFE",
          "planted-delta.json": "{}",
        },
      );
      plantJob(jobsDir, TAMPERED_JOB, { tensors: "../../sentinel.txt", manifest: "../../../sentinel.txt" }, {});
      model = await loadModel(embedded.dir, { executionProvider: "cpu", maxBatch: 1, maxQueue: 2 });
      jobs = new LensJobRunner(model, { dir: jobsDir });
      app = createBackendApp(model, { secret: SECRET, lens: jobs });
      before = snapshot(root);
      await new Promise<void>((resolve) => {
        server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) => {
          port = info.port;
          resolve();
        });
      });
    });

    afterAll(async () => {
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      await jobs?.close();
      rmSync(root, { recursive: true, force: true });
    });

    async function call(
      method: string,
      path: string,
      body?: unknown,
      headers: Record<string, string> = {},
    ): Promise<Answer> {
      const init: RequestInit = { method, headers: { ...AUTH, ...headers } };
      if (body !== undefined) {
        init.body = typeof body === "string" || body instanceof FormData ? body : JSON.stringify(body);
        if (!(body instanceof FormData)) (init.headers as Record<string, string>)["content-type"] = "application/json";
      }
      const res = await app.request(path, init);
      return { status: res.status, text: await res.text() };
    }

    /** Over a socket, the path exactly as given (node's http client does not normalise it). */
    function raw(method: string, path: string): Promise<Answer> {
      return new Promise((resolve, reject) => {
        const req = httpRequest({ host: "127.0.0.1", port, method, path, headers: AUTH }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", reject);
        });
        req.on("error", reject);
        req.end();
      });
    }

    it("the planted job is served normally (the setup works)", async () => {
      const res = await app.request(`${LENS_PATH}/jobs/${VALID_JOB}/artifact`, { headers: AUTH });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("SAFE");
      const m = await app.request(`${LENS_PATH}/jobs/${VALID_JOB}/artifact?part=manifest`, { headers: AUTH });
      expect(m.status).toBe(200);
    });

    it("delta routes: GET, DELETE and PUT /deltas/:id refuse every odd id", async () => {
      let n = 0;
      for (const id of ODD_IDS) {
        const p = `${DELTAS_PATH}/${encodeURIComponent(id)}`;
        expectClean(await call("GET", p), `GET ${JSON.stringify(id)}`);
        expectClean(await call("DELETE", p), `DELETE ${JSON.stringify(id)}`);
        const form = new FormData();
        form.set("manifest", JSON.stringify({ id }));
        form.set("tensors", new File([new Uint8Array(8)], "x.safetensors"));
        // "." and ".." are resolved away by URL parsing: the PUT lands on no route (404).
        const put = expectClean(await call("PUT", p, form), `PUT ${JSON.stringify(id)}`);
        expect(put.code, `PUT ${JSON.stringify(id)}`).not.toBe("internal");
        n += 3;
      }
      expect(n).toBe(ODD_IDS.length * 3);
    });

    it("a valid delta whose id is only dots is refused (such an id cannot travel in a URL path)", async () => {
      // "..." survives URL parsing, so the id reaches the route; "." and ".." never can, which is
      // why the gateway could not send such a delta to a backend ({backend}/internal/v1/deltas/..).
      for (const id of ["...", "....", ".hidden-ok-but-dotted"]) {
        const made = makeDelta({
          hiddenSize: model.info.hiddenSize,
          layers: [0],
          rank: 1,
          fingerprint: model.fingerprint,
          id,
        });
        const form = new FormData();
        form.set("manifest", JSON.stringify(made.manifest));
        form.set("tensors", new File([made.bytes], "x.safetensors"));
        const res = await call("PUT", `${DELTAS_PATH}/${encodeURIComponent(id)}`, form);
        if (id.startsWith(".hidden")) {
          // Leading dots are fine as ids when not only dots (nothing on disk is named after a delta id).
          expect(res.status, res.text).toBe(201);
          expect((await call("DELETE", `${DELTAS_PATH}/${encodeURIComponent(id)}`)).status).toBe(204);
          continue;
        }
        const e = expectClean(res, `PUT valid delta ${id}`, [400]);
        expect(["bad_request", "manifest_invalid"]).toContain(e.code);
      }
    });

    it("job routes: GET, DELETE /jobs/:id and GET /jobs/:id/artifact refuse every odd id", async () => {
      for (const id of ODD_IDS) {
        const p = `${LENS_PATH}/jobs/${encodeURIComponent(id)}`;
        for (const [method, path] of [
          ["GET", p],
          ["DELETE", p],
          ["GET", `${p}/artifact`],
          ["GET", `${p}/artifact?part=manifest`],
        ] as const) {
          const e = expectClean(await call(method, path), `${method} ${path.slice(0, 120)}`);
          expect(["invalid_request", "not_found"]).toContain(e.code);
        }
      }
    });

    it("artifact parts: only tensors or manifest, whatever else is asked", async () => {
      const parts = [
        ...ODD_IDS,
        "TENSORS",
        "manifest.json",
        "job.json",
        "../job.json",
        "planted-delta.safetensors",
        "tensors/../../sentinel.txt",
        "tensors\u0000",
      ];
      for (const part of parts) {
        const e = expectClean(
          await call("GET", `${LENS_PATH}/jobs/${VALID_JOB}/artifact?part=${encodeURIComponent(part)}`),
          `part ${JSON.stringify(part).slice(0, 80)}`,
          [400],
        );
        expect(e.code).toBe("invalid_request");
      }
      // Repeated part parameters: the first wins, and it is still checked.
      expectClean(
        await call("GET", `${LENS_PATH}/jobs/${VALID_JOB}/artifact?part=..%2F..%2Fsentinel.txt&part=tensors`),
        "repeated part",
        [400],
      );
    });

    it("job references in bodies (probe, delta) are refused before any lookup on disk", async () => {
      const bodies = (ref: string) => [
        { kind: "subspace", probe: ref, language: "sw", layers: [0], lambda: 1, alpha: 1 },
        { kind: "train", probe: ref, language: "sw", steps: 1 },
        { kind: "eval", delta: ref },
      ];
      for (const ref of [...ODD_IDS, "", "job-abc999-00000000"]) {
        for (const body of bodies(ref)) {
          const e = expectClean(
            await call("POST", `${LENS_PATH}/jobs`, body),
            `${body.kind} ${JSON.stringify(ref).slice(0, 80)}`,
          );
          expect(["invalid_request", "not_found"]).toContain(e.code);
        }
      }
      // Fields that are not references do not take paths either.
      for (const body of [
        { kind: "probe", languages: ["en", "sw"], layers: [0], prompts: "../../sentinel.txt" },
        { kind: "probe", languages: ["en", "sw"], layers: [0], prompts: "/etc/passwd" },
        { kind: "train", probe: VALID_JOB, language: "sw", prompts: "../../sentinel.txt" },
        { kind: "subspace", probe: VALID_JOB, language: "sw", layers: [0], lambda: 1, alpha: 1, id: "../../x" },
        { kind: "subspace", probe: VALID_JOB, language: "sw", layers: [0], lambda: 1, alpha: 1, output: "../../x" },
      ]) {
        expectClean(await call("POST", `${LENS_PATH}/jobs`, body), JSON.stringify(body), [400, 404, 409]);
      }
    });

    it("a generation naming an odd delta is refused (400), or told the delta is not loaded (409)", async () => {
      for (const id of [...ODD_IDS, ""]) {
        const body = {
          request_id: "r1",
          model: "lens-tiny-chat",
          messages: [{ role: "user", content: "hi" }],
          sampling: { max_tokens: 1 },
          language: "en",
          delta: { id, scale: 1 },
        };
        const e = expectClean(
          await call("POST", GENERATE_PATH, body),
          `generate ${JSON.stringify(id).slice(0, 80)}`,
          [400, 404, 409],
        );
        expect(["invalid_request", "delta_not_loaded", "model_not_found"]).toContain(e.code);
      }
    });

    it("a tampered record naming files outside its job folder serves nothing from there", async () => {
      for (const part of ["tensors", "manifest"]) {
        const res = await app.request(`${LENS_PATH}/jobs/${TAMPERED_JOB}/artifact?part=${part}`, { headers: AUTH });
        const text = await res.text();
        expect(res.status, text).not.toBe(200);
        expectClean({ status: res.status, text }, `tampered ${part}`, [400, 404, 500]);
      }
    });

    it("over real HTTP, paths as written (dot segments, encoded separators, bad escapes) are refused", async () => {
      const prefixes = [`${DELTAS_PATH}/`, `${LENS_PATH}/jobs/`];
      const paths: string[] = [];
      for (const prefix of prefixes) {
        for (const s of RAW_SUFFIXES) paths.push(`${prefix}${s}`, `${prefix}${s}/artifact`);
        paths.push(
          `${prefix}../../../sentinel.txt`,
          `${prefix}..`,
          `${prefix}./..`,
          `${prefix}${VALID_JOB}/../../../../sentinel.txt`,
        );
      }
      paths.push(
        `${LENS_PATH}/jobs/${VALID_JOB}/artifact/../../../sentinel.txt`,
        "/internal/v1/../../sentinel.txt",
        `/${"a/".repeat(2000)}`,
      );
      for (const path of paths) {
        for (const method of ["GET", "DELETE"]) {
          const a = await raw(method, path);
          // An unknown route is a 404 too; what matters is that nothing outside was touched or served.
          expectClean(a, `${method} ${path.slice(0, 120)}`, [400, 404]);
        }
      }
    });

    it("nothing was created, changed or removed in the jobs folder or next to it", () => {
      expect(snapshot(root)).toEqual(before);
      expect(readFileSync(join(root, "sentinel.txt"), "utf8")).toBe(SENTINEL_TEXT);
    });
  },
);
