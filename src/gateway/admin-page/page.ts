/**
 * The admin page (GET /admin): one self-contained HTML document (inline CSS and JS, no external
 * assets). It holds no data: it asks for an admin key, keeps it in sessionStorage (never in the
 * URL), and reads the JSON admin API with `Authorization: Bearer <key>`. Experiments are listed;
 * the chosen one's results show as an SVG bar chart of fidelity per arm with 95% CI error bars, and
 * a table with requests, latency, feedback and each arm's difference from the control.
 */

/** Headers sent with the page: only inline script/style, fetches to the gateway itself. */
export const ADMIN_PAGE_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
};

const STYLE = `
:root { --fg:#1b1f24; --muted:#5b6470; --line:#d8dde3; --bg:#f6f8fa; --control:#8a94a3; --arm:#2f6fde; --good:#1a7f37; --bad:#c62828; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
header { background:#fff; border-bottom:1px solid var(--line); padding:12px 24px; display:flex; align-items:center; gap:16px; }
header h1 { font-size:18px; margin:0; flex:1; }
main { padding:16px 24px; max-width:1280px; }
section { overflow-x:auto; background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px; margin-bottom:16px; }
h2 { font-size:16px; margin:0 0 12px; }
label { font-weight:600; margin-right:8px; }
input[type=password] { font:inherit; padding:6px 8px; width:340px; border:1px solid var(--line); border-radius:6px; }
button { font:inherit; padding:6px 12px; border-radius:6px; border:1px solid #1f5bbf; background: var(--arm); color:#fff; cursor:pointer; }
button.secondary { background:#fff; color: var(--fg); border-color: var(--line); }
table { border-collapse: collapse; width:100%; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); white-space:nowrap; }
th { font-size:13px; color: var(--muted); font-weight:600; white-space:normal; }
td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; }
tr.exp { cursor:pointer; }
tr.exp:hover { background:#eef3fc; }
tr.exp.selected { background:#e2ecfb; }
.muted { color: var(--muted); }
.badge { display:inline-block; font-size:12px; padding:1px 8px; border-radius:10px; background:#eceff3; color: var(--muted); margin-left:6px; }
.badge.running { background:#dcf3e3; color: var(--good); }
.verdict { font-size:15px; margin:4px 0 12px; }
.verdict b.good { color: var(--good); }
.verdict b.bad { color: var(--bad); }
.error { color: var(--bad); font-weight:600; }
svg text { font-family: inherit; }
`;

const SCRIPT = `
"use strict";
var KEY_NAME = "lens-admin-key";
var state = { experiments: [], selected: null };
function $(id) { return document.getElementById(id); }
function el(tag, attrs, children) {
  var e = document.createElement(tag);
  for (var k in attrs || {}) { if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]); }
  (children || []).forEach(function (c) { e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
  return e;
}
var SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  var e = document.createElementNS(SVGNS, tag);
  for (var k in attrs) e.setAttribute(k, String(attrs[k]));
  if (text !== undefined) e.textContent = text;
  return e;
}
function pct(x, digits) { return x === null || x === undefined ? "n/a" : (x * 100).toFixed(digits === undefined ? 1 : digits) + "%"; }
function pp(x) { return x === null || x === undefined ? "n/a" : (x >= 0 ? "+" : "\\u2212") + Math.abs(x * 100).toFixed(1) + " pp"; }
function ms(x) { return x === null || x === undefined ? "n/a" : Math.round(x) + " ms"; }
function pval(p) { return p === null || p === undefined ? "n/a" : p < 0.001 ? "p < 0.001" : "p = " + p.toFixed(3); }
/** Wilson 95% interval of matched/measured. */
function wilson(x, n) {
  if (!n) return null;
  var z = 1.959963984540054, p = x / n, z2 = z * z;
  var centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  var half = (z * Math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}
function key() { return sessionStorage.getItem(KEY_NAME); }
function api(path) {
  return fetch(path, { headers: { authorization: "Bearer " + key() }, cache: "no-store" }).then(function (res) {
    return res.json().then(function (body) {
      if (!res.ok) throw new Error((body && body.error && body.error.message) || ("HTTP " + res.status));
      return body;
    });
  });
}
function showError(where, err) { where.textContent = ""; where.appendChild(el("p", { class: "error", text: String(err && err.message || err) })); }
function setKey() {
  var v = $("key").value.trim();
  if (!v) return;
  sessionStorage.setItem(KEY_NAME, v);
  $("key").value = "";
  start();
}
function forget() { sessionStorage.removeItem(KEY_NAME); location.reload(); }
function start() {
  var has = !!key();
  $("login").hidden = has;
  $("logout").hidden = !has;
  $("content").hidden = !has;
  if (!has) { $("key").focus(); return; }
  api("/admin/experiments").then(function (list) {
    state.experiments = list.data;
    renderList();
    if (state.experiments.length) select(state.experiments[0].id);
    else $("results").textContent = "No experiments yet.";
  }).catch(function (err) { showError($("experiments"), err); });
}
function renderList() {
  var rows = state.experiments.map(function (e) {
    var tr = el("tr", { class: "exp" + (e.id === state.selected ? " selected" : ""), "data-id": e.id }, [
      el("td", {}, [el("b", { text: e.name })]),
      el("td", { text: e.languages.join(", ") }),
      el("td", {}, [el("span", { class: "badge " + e.state, text: e.state })]),
      el("td", { text: e.arms.map(function (a) { return a.name; }).join(" / ") }),
      el("td", { class: "muted", text: new Date(e.created_at * 1000).toISOString().slice(0, 16).replace("T", " ") }),
    ]);
    tr.addEventListener("click", function () { select(e.id); });
    return tr;
  });
  var head = el("tr", {}, ["Experiment", "Languages", "State", "Arms", "Created (UTC)"].map(function (h) { return el("th", { text: h }); }));
  var box = $("experiments");
  box.textContent = "";
  box.appendChild(el("table", {}, [el("thead", {}, [head]), el("tbody", {}, rows)]));
}
function select(id) {
  state.selected = id;
  renderList();
  var exp = state.experiments.filter(function (e) { return e.id === id; })[0];
  $("results").textContent = "Loading\\u2026";
  api("/admin/experiments/" + encodeURIComponent(id) + "/results").then(function (r) { renderResults(exp, r); })
    .catch(function (err) { showError($("results"), err); });
}
function renderResults(exp, r) {
  var box = $("results");
  box.textContent = "";
  box.appendChild(el("h2", {}, [exp.name, el("span", { class: "badge " + r.state, text: r.state }), el("span", { class: "muted", text: "  languages: " + exp.languages.join(", ") + " \\u00b7 control arm: " + r.control })]));
  r.arms.forEach(function (a) {
    if (!a.vs_control) return;
    var f = a.vs_control.fidelity;
    var line = el("p", { class: "verdict" }, [el("b", { text: a.arm }), " vs " + r.control + " (control): fidelity "]);
    if (f) {
      var sig = f.p_value !== null && f.p_value < 0.05;
      line.appendChild(el("b", { class: sig ? (f.diff > 0 ? "good" : "bad") : "", text: pp(f.diff) }));
      line.appendChild(document.createTextNode(" (95% CI " + pp(f.ci95[0]) + " to " + pp(f.ci95[1]) + ", " + pval(f.p_value) + (sig ? ", significant" : ", not significant") + ")"));
    } else line.appendChild(document.createTextNode("n/a (no measured requests)"));
    var fb = a.vs_control.feedback_rate;
    if (fb) line.appendChild(document.createTextNode("; feedback rate " + pp(fb.diff) + " (" + pval(fb.p_value) + ")"));
    box.appendChild(line);
  });
  box.appendChild(chart(r));
  var heads = ["Arm", "Requests", "Fidelity", "95% CI", "Latency mean", "Latency p95", "Feedback rate", "\\u0394 fidelity vs control", "p-value"];
  var thead = el("tr", {}, heads.map(function (h, i) { return el("th", { class: i ? "num" : "", text: h }); }));
  var rows = r.arms.map(function (a) {
    var ci = wilson(a.fidelity.matched, a.fidelity.measured);
    var f = a.vs_control && a.vs_control.fidelity;
    return el("tr", { "data-arm": a.arm }, [
      el("td", {}, [el("b", { text: a.arm })].concat(a.arm === r.control ? [el("span", { class: "badge", text: "control" })] : [])),
      el("td", { class: "num", text: String(a.requests) }),
      el("td", { class: "num", text: pct(a.fidelity.rate) + " (" + a.fidelity.matched + "/" + a.fidelity.measured + ")" }),
      el("td", { class: "num", text: ci ? pct(ci[0]) + " \\u2013 " + pct(ci[1]) : "n/a" }),
      el("td", { class: "num", text: ms(a.latency.mean_ms) }),
      el("td", { class: "num", text: ms(a.latency.p95_ms) }),
      el("td", { class: "num", text: pct(a.feedback.rate) }),
      el("td", { class: "num", text: a.arm === r.control ? "\\u2014" : f ? pp(f.diff) : "n/a" }),
      el("td", { class: "num", text: a.arm === r.control ? "\\u2014" : f ? pval(f.p_value) : "n/a" }),
    ]);
  });
  box.appendChild(el("table", { id: "arm-table" }, [el("thead", {}, [thead]), el("tbody", {}, rows)]));
}
function chart(r) {
  var W = 720, H = 320, left = 64, right = 24, top = 36, bottom = 64;
  var plotW = W - left - right, plotH = H - top - bottom;
  var s = svg("svg", { id: "fidelity-chart", width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "Fidelity per arm with 95% confidence intervals" });
  s.appendChild(svg("text", { x: left, y: 20, "font-size": 14, "font-weight": 600, fill: "#1b1f24" }, "Fidelity (reply in the asked language) per arm, with 95% CI"));
  var y = function (v) { return top + plotH * (1 - v); };
  [0, 0.25, 0.5, 0.75, 1].forEach(function (t) {
    s.appendChild(svg("line", { x1: left, x2: W - right, y1: y(t), y2: y(t), stroke: t === 0 ? "#8a94a3" : "#e3e7ec" }));
    s.appendChild(svg("text", { x: left - 8, y: y(t) + 4, "text-anchor": "end", "font-size": 12, fill: "#5b6470" }, Math.round(t * 100) + "%"));
  });
  var n = r.arms.length, slot = plotW / n, bw = Math.min(110, slot * 0.55);
  r.arms.forEach(function (a, i) {
    var cx = left + slot * (i + 0.5), rate = a.fidelity.rate, control = a.arm === r.control;
    var g = svg("g", { class: "arm", "data-arm": a.arm });
    if (rate !== null) {
      g.appendChild(svg("rect", { class: "bar", "data-arm": a.arm, x: cx - bw / 2, y: y(rate), width: bw, height: plotH * rate, fill: control ? "#8a94a3" : "#2f6fde", rx: 3 }));
      var ci = wilson(a.fidelity.matched, a.fidelity.measured);
      if (ci) {
        g.appendChild(svg("line", { x1: cx, x2: cx, y1: y(ci[1]), y2: y(ci[0]), stroke: "#1b1f24", "stroke-width": 1.5 }));
        g.appendChild(svg("line", { x1: cx - 10, x2: cx + 10, y1: y(ci[1]), y2: y(ci[1]), stroke: "#1b1f24", "stroke-width": 1.5 }));
        g.appendChild(svg("line", { x1: cx - 10, x2: cx + 10, y1: y(ci[0]), y2: y(ci[0]), stroke: "#1b1f24", "stroke-width": 1.5 }));
      }
      g.appendChild(svg("text", { x: cx + bw / 2 + 4, y: y(rate) + 14, "font-size": 13, "font-weight": 700, fill: "#1b1f24" }, pct(rate)));
    } else {
      g.appendChild(svg("rect", { class: "bar", "data-arm": a.arm, x: cx - bw / 2, y: y(0) - 1, width: bw, height: 1, fill: "#8a94a3" }));
      g.appendChild(svg("text", { x: cx, y: y(0) - 8, "text-anchor": "middle", "font-size": 12, fill: "#5b6470" }, "no data"));
    }
    g.appendChild(svg("text", { x: cx, y: H - bottom + 20, "text-anchor": "middle", "font-size": 13, "font-weight": 600, fill: "#1b1f24" }, a.arm));
    g.appendChild(svg("text", { x: cx, y: H - bottom + 38, "text-anchor": "middle", "font-size": 12, fill: "#5b6470" }, (control ? "control arm \u00b7 " : "") + "n = " + a.fidelity.measured + " measured"));
    s.appendChild(g);
  });
  return s;
}
document.addEventListener("DOMContentLoaded", function () {
  $("use-key").addEventListener("click", setKey);
  $("key").addEventListener("keydown", function (e) { if (e.key === "Enter") setKey(); });
  $("logout").addEventListener("click", forget);
  start();
});
`;

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
<header><h1>Lens Gateway admin &middot; experiments</h1><button id="logout" class="secondary" hidden>Forget key</button></header>
<main>
<section id="login">
  <h2>Admin key</h2>
  <p class="muted">The key stays in this tab (sessionStorage) and is sent only as an Authorization header to this gateway.</p>
  <label for="key">Key</label><input id="key" type="password" autocomplete="off" spellcheck="false" placeholder="lens-admin-&hellip;">
  <button id="use-key" type="button">Use key</button>
</section>
<div id="content" hidden>
<section><h2>Experiments</h2><div id="experiments">Loading&hellip;</div></section>
<section id="results"></section>
</div>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
