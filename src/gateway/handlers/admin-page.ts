import type { Context } from "hono";
import { ADMIN_PAGE_HEADERS, ADMIN_PAGE_HTML } from "../admin-page/page.js";
import type { GatewayEnv } from "../env.js";

/** GET /admin: the static admin page; it holds no data (the JSON admin API behind it needs the key). */
export function adminPageHandler(c: Context<GatewayEnv>): Response {
  return c.html(ADMIN_PAGE_HTML, 200, ADMIN_PAGE_HEADERS);
}
