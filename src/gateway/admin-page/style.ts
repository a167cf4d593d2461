/** The console's stylesheet (inline in the page). */
export const STYLE = `
:root { --fg:#1b1f24; --muted:#5b6470; --line:#d8dde3; --bg:#f6f8fa; --control:#8a94a3; --arm:#2f6fde; --good:#1a7f37; --bad:#c62828; --warn:#9a6700; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin:0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
header { background:#fff; border-bottom:1px solid var(--line); padding:12px 24px; display:flex; align-items:center; gap:16px; }
header h1 { font-size:18px; margin:0; }
nav { display:flex; gap:4px; flex:1; }
nav button { background:#fff; color: var(--muted); border-color: transparent; font-weight:600; }
nav button[aria-selected=true] { color: var(--fg); border-color: var(--line); background: var(--bg); }
#view-traffic button[aria-selected=true] { background: var(--bg); border-color: var(--control); font-weight:600; }
main { padding:16px 24px; max-width:1280px; }
section { overflow-x:auto; background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px; margin-bottom:16px; }
h2 { font-size:16px; margin:0 0 12px; }
h3 { font-size:14px; margin:16px 0 8px; }
label { font-weight:600; margin-right:8px; }
input[type=password] { font:inherit; padding:6px 8px; width:340px; border:1px solid var(--line); border-radius:6px; }
button { font:inherit; padding:6px 12px; border-radius:6px; border:1px solid #1f5bbf; background: var(--arm); color:#fff; cursor:pointer; }
button.secondary { background:#fff; color: var(--fg); border-color: var(--line); }
table { border-collapse: collapse; width:100%; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); white-space:nowrap; vertical-align:top; }
th { font-size:13px; color: var(--muted); font-weight:600; white-space:normal; }
td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; }
td.wrap { white-space:normal; min-width:180px; }
td.uses { white-space:normal; min-width:160px; max-width:240px; }
td.uses .chip { white-space:normal; }
tr.exp { cursor:pointer; }
tr.exp:hover { background:#eef3fc; }
tr.exp.selected { background:#e2ecfb; }
.muted { color: var(--muted); }
.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size:13px; }
.badge { display:inline-block; font-size:12px; padding:1px 8px; border-radius:10px; background:#eceff3; color: var(--muted); margin-left:6px; }
.badge.running, .badge.ok, .badge.better { background:#dcf3e3; color: var(--good); }
.badge.breached, .badge.worse, .badge.untrusted { background:#fde2e1; color: var(--bad); }
.badge.waiting, .badge.inconclusive, .badge.paused { background:#fff4d6; color: var(--warn); }
.chip { display:inline-block; font-size:12px; padding:1px 8px; border-radius:4px; background:#eef3fc; margin:1px 4px 1px 0; white-space:nowrap; }
.banner { border-radius:6px; padding:10px 12px; margin:8px 0 12px; border:1px solid var(--line); background: var(--bg); }
.banner.bad { border-color:#f3b7b3; background:#fdeceb; }
.banner.bad b { color: var(--bad); }
.banner.ok { border-color:#b7e0c3; background:#eef8f1; }
.verdict { font-size:15px; margin:4px 0 2px; }
.verdict b.good { color: var(--good); }
.verdict b.bad { color: var(--bad); }
.fixed { font-size:13px; margin:0 0 10px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; }
.lang-card { border:1px solid var(--line); border-radius:8px; padding:12px; margin-bottom:12px; }
.legend { font-size:13px; color: var(--muted); margin:0 0 8px; }
.legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin:0 4px 0 10px; vertical-align:baseline; }
.error { color: var(--bad); font-weight:600; }
svg text { font-family: inherit; }
`;
