import { beforeAll, describe, expect, it } from "vitest";
import { GENERATE_PATH, GenerateFrame, MODELS_PATH, ModelsResponse } from "../../src/protocol/backend.js";
import { createBackendApp } from "../../src/gpu-backend/app.js";
import { loadModel } from "../../src/gpu-backend/load.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

const embedded = MODEL_CASES[0]!;

const body = (over: Record<string, unknown> = {}) =>
  JSON.stringify({
    request_id: "t-1",
    model: "lens-tiny-chat",
    messages: [{ role: "user", content: "What is the capital of France?" }],
    sampling: { temperature: 0, max_tokens: 8 },
    language: "en",
    delta: null,
    ...over,
  });

describe.skipIf(embedded.skip !== null)("backend HTTP API on the embedded model", () => {
  let app: ReturnType<typeof createBackendApp>;
  beforeAll(async () => {
    // Loaded here, not in the describe body, which runs even when the suite is skipped.
    app = createBackendApp(await loadModel(embedded.dir, { executionProvider: "cpu", maxBatch: 1, maxQueue: 2 }));
  });
  const post = (b: string) =>
    app.request(GENERATE_PATH, { method: "POST", body: b, headers: { "content-type": "application/json" } });

  it("lists its model", async () => {
    const res = await app.request(MODELS_PATH);
    const parsed = ModelsResponse.parse(await res.json());
    expect(parsed.models.map((m) => m.id)).toEqual(["lens-tiny-chat"]);
  });

  it("streams protocol frames: start, text..., end", async () => {
    const res = await post(body());
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/x-ndjson");
    const frames = (await res.text())
      .trim()
      .split("\n")
      .map((l) => GenerateFrame.parse(JSON.parse(l)));
    expect(frames[0]).toMatchObject({ type: "start", model: "lens-tiny-chat" });
    const end = frames.at(-1);
    expect(end?.type).toBe("end");
    if (end?.type === "end") expect(end.usage.completion_tokens).toBeLessThanOrEqual(8);
    expect(frames.slice(1, -1).every((f) => f.type === "text")).toBe(true);
  });

  it.each([
    ["not JSON", "{", 400, "invalid_request"],
    ["schema violation", body({ sampling: { temperature: 5 } }), 400, "invalid_request"],
    ["no messages", body({ messages: [] }), 400, "invalid_request"],
    ["another model", body({ model: "gpt-x" }), 404, "model_not_found"],
    [
      "a prompt over the context",
      body({ messages: [{ role: "user", content: "x".repeat(5000) }] }),
      400,
      "invalid_request",
    ],
  ])("refuses %s", async (_name, b, status, code) => {
    const res = await post(b as string);
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  it("answers 503 overloaded with retry-after once the queue is full", async () => {
    const long = body({ sampling: { temperature: 0, max_tokens: 400 } });
    const responses = await Promise.all([post(long), post(long), post(long), post(long), post(long)]);
    const statuses = responses.map((r) => r.status);
    expect(statuses).toContain(503);
    const refused = responses.find((r) => r.status === 503)!;
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("overloaded");
    await Promise.all(responses.filter((r) => r.status === 200).map((r) => r.body?.cancel()));
  });

  it("exposes Prometheus metrics", async () => {
    const text = await (await app.request("/metrics")).text();
    expect(text).toMatch(/^lens_backend_tokens_generated_total [1-9]\d*$/m);
    expect(text).toMatch(/^lens_backend_requests_total\{outcome="rejected_overloaded"\} [1-9]/m);
    expect(text).toMatch(/^# TYPE lens_backend_batch_size gauge$/m);
  });
});
