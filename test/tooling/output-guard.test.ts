import { describe, expect, it } from "vitest";
import { OutputWatch, runGuarded } from "../../scripts/output-guard.js";

const HUNG =
  "Error: The Workers runtime canceled this request because it detected that your Worker's code had hung and would never generate a response.";

describe("the test run's output guard", () => {
  it("finds workerd's hang report, even split across chunks, and nothing in clean output", () => {
    const watch = new OutputWatch();
    watch.push("ok 1\nsome output\n");
    watch.push(HUNG.slice(0, 40));
    watch.push(`${HUNG.slice(40)}\nmore\n`);
    watch.end();
    expect(watch.found).toEqual([HUNG]);

    const clean = new OutputWatch();
    clean.push("Tests 12 passed\nhung up early: 3 (a client's choice)\n");
    clean.end();
    expect(clean.found).toEqual([]);
  });

  it("fails a command that exits 0 when its output (stdout or stderr) holds the report", async () => {
    // Not echoed: this run's own guard would (rightly) fail on the report otherwise.
    const quiet = { ...process.env };
    const bad = await runGuarded(
      process.execPath,
      ["-e", `console.error(${JSON.stringify(HUNG)}); process.exit(0)`],
      quiet,
      false,
    );
    expect(bad.code).toBe(1);
    expect(bad.found).toHaveLength(1);
    const good = await runGuarded(process.execPath, ["-e", "console.log('all good')"], quiet, false);
    expect(good.code).toBe(0);
    const failing = await runGuarded(process.execPath, ["-e", "process.exit(3)"], quiet, false);
    expect(failing.code).toBe(3);
  });
});
