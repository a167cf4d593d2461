/**
 * The admin console (GET /admin): one self-contained HTML document (inline CSS and JS, no external
 * assets, no build step). It holds no data: it asks for an admin key, keeps it in sessionStorage
 * (never in the URL), and reads the JSON admin API with `Authorization: Bearer <key>`. Four views:
 * experiments (sequential verdicts, sample-ratio check, guardrails), languages, adapters, and
 * traffic per language over time.
 */
import { SCRIPT_CORE } from "./script-core.js";
import { SCRIPT_EXPERIMENTS } from "./script-experiments.js";
import { SCRIPT_REGISTRY } from "./script-registry.js";
import { SCRIPT_TRAFFIC } from "./script-traffic.js";
import { STYLE } from "./style.js";

/** Headers sent with the page: only inline script/style, fetches to the gateway itself. */
export const ADMIN_PAGE_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
};

export const ADMIN_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Lens Gateway admin</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>Lens Gateway admin</h1>
  <nav id="tabs" role="tablist" hidden>
    <button id="tab-experiments" role="tab" type="button" class="secondary">Experiments</button>
    <button id="tab-languages" role="tab" type="button" class="secondary">Languages</button>
    <button id="tab-adapters" role="tab" type="button" class="secondary">Adapters</button>
    <button id="tab-traffic" role="tab" type="button" class="secondary">Traffic</button>
  </nav>
  <button id="logout" class="secondary" hidden>Forget key</button>
</header>
<main>
<section id="login">
  <h2>Admin key</h2>
  <p class="muted">The key stays in this tab (sessionStorage) and is sent only as an Authorization header to this gateway.</p>
  <label for="key">Key</label><input id="key" type="password" autocomplete="off" spellcheck="false" placeholder="lens-admin-&hellip;">
  <button id="use-key" type="button">Use key</button>
</section>
<div id="content" hidden>
<div id="view-experiments" hidden>
<section><h2>Experiments</h2><div id="experiments">Loading&hellip;</div></section>
<section id="results"></section>
</div>
<div id="view-languages" hidden>
<section><h2>Languages</h2><p class="muted">What each language's requests carry outside experiments, and the one-step rollback target.</p><div id="languages">Loading&hellip;</div></section>
</div>
<div id="view-adapters" hidden>
<section><h2>Adapters</h2><p class="muted">Uploaded and trained deltas, and where each one is in use.</p><div id="adapters">Loading&hellip;</div></section>
</div>
<div id="view-traffic" hidden>
<section><h2>Traffic per language</h2>
<p><button id="hours-24" type="button" class="secondary">24 hours</button> <button id="hours-72" type="button" class="secondary">3 days</button> <button id="hours-168" type="button" class="secondary">7 days</button></p>
<div id="traffic">Loading&hellip;</div></section>
</div>
</div>
</main>
<script>${SCRIPT_CORE}${SCRIPT_EXPERIMENTS}${SCRIPT_REGISTRY}${SCRIPT_TRAFFIC}</script>
</body>
</html>
`;
