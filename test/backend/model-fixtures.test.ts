import { describe, expect, it } from "vitest";
import { lensPromptsSkip } from "./lens-prompts.js";
import { MODEL_CASES } from "../support/model-fixtures.js";

// The model tests skip a model whose files are missing; in this repository none may be, or the
// fp16 and end-to-end cases would pass by not running at all.
describe("what the backend tests run on", () => {
  it("has both models and the held-out prompts in the checkout", () => {
    expect(MODEL_CASES.map((c) => [c.name, c.skip])).toEqual(MODEL_CASES.map((c) => [c.name, null]));
    expect(lensPromptsSkip).toBeNull();
  });
});
