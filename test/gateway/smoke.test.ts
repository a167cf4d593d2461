import { exports } from "cloudflare:workers";
import { expect, it } from "vitest";

it("serves the root", async () => {
  const res = await exports.default.fetch("http://gateway/");
  expect(await res.text()).toBe("lens gateway");
});
