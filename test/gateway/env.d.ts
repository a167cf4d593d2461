import type { D1Migration } from "cloudflare:test";
import type { GatewayBindings } from "../../src/gateway/env.js";

declare global {
  namespace Cloudflare {
    interface Env extends GatewayBindings {
      TEST_MIGRATIONS: D1Migration[];
    }
  }
}
