import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

export default defineConfig(async () => {
  const migrations = await readD1Migrations("migrations");
  return {
    test: {
      projects: [
        {
          // Gateway tests run inside workerd with the real D1 and R2 bindings from wrangler.toml.
          plugins: [
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: { bindings: { TEST_MIGRATIONS: migrations } },
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
