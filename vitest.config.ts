import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { createServer } from "node:net";
import { defineConfig } from "vitest/config";
import { TEST_BACKEND_SECRET } from "./dev/echo.js";

/** A loopback port free now: the global setup starts the backend behind `SELF` on it. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export default defineConfig(async () => {
  const migrations = await readD1Migrations("migrations");
  // Requests through `SELF` run in their own request contexts, as in production, so a test can
  // cancel one while another runs; their bindings are fixed here, so their backend's port is too.
  const selfBackend = `http://127.0.0.1:${await freePort()}`;
  process.env["LENS_TEST_SELF_BACKEND"] = selfBackend;
  return {
    test: {
      projects: [
        {
          // Gateway tests run inside workerd with the real D1 and R2 bindings from wrangler.toml.
          plugins: [
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: {
                bindings: {
                  TEST_MIGRATIONS: migrations,
                  BACKEND_URLS: selfBackend,
                  BACKEND_SECRET: TEST_BACKEND_SECRET,
                },
              },
            }),
          ],
          test: {
            name: "gateway",
            include: ["test/gateway/**/*.test.ts"],
            setupFiles: ["test/gateway/apply-migrations.ts"],
            globalSetup: ["test/support/backends-global-setup.ts"],
          },
        },
        {
          test: {
            name: "node",
            environment: "node",
            include: ["test/**/*.test.ts"],
            exclude: ["test/gateway/**", "**/node_modules/**"],
            testTimeout: 60_000,
          },
        },
      ],
    },
  };
});
