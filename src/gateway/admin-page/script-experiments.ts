/**
 * The experiments view: the list, and for the chosen experiment its stop reason, the sample-ratio
 * check, a sequential verdict per arm (fixed-horizon figures beside it), fidelity per arm as an SVG
 * bar chart with Wilson 95% intervals, the per-arm figures, and the guardrails.
 */
export const SCRIPT_EXPERIMENTS = `
var experiments = { list: [], selected: null };
LOADERS.experiments = function () {
  api("/admin/experiments").then(function (list) {
    experiments.list = list.data;
    renderExperimentList();
    if (experiments.list.length) selectExperiment(experiments.list[0].id);
    else $("results").textContent = "No experiments yet.";
  }).catch(function (err) { showError($("experiments"), err); });
};
/** Wilson 95% interval of x/n. */
function wilson(x, n) {
  if (!n) return null;
  var z = 1.959963984540054, p = x / n, z2 = z * z;
  var centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  var half = (z * Math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}
function renderExperimentList() {
  var rows = experiments.list.map(function (e) {
    var tr = el("tr", { class: "exp" + (e.id === experiments.selected ? " selected" : ""), "data-id": e.id }, [
      el("td", {}, [el("b", { text: e.name })]),
      el("td", { text: e.languages.join(", ") }),
      el("td", {}, [badge(e.state)]),
      el("td", { text: e.arms.map(function (a) { return a.name; }).join(" / ") }),
      el("td", { text: e.guardrails && e.guardrails.length ? e.guardrails.map(function (g) { return g.metric.replace("_", " "); }).join(", ") : "none" }),
      el("td", { class: "wrap", text: stopText(e.stop_reason) || "" }),
      el("td", { class: "muted", text: when(e.created_at) }),
    ]);
    tr.addEventListener("click", function () { selectExperiment(e.id); });
    return tr;
  });
  var box = $("experiments");
  box.textContent = "";
  box.appendChild(table("experiment-list", ["Experiment", "Languages", "State", "Arms", "Guardrails", "Stopped because", "Created (UTC)"], rows));
}
function stopText(r) {
  if (!r) return null;
  if (r.by === "operator") return "stopped by an operator";
  if (r.by === "promotion") return "arm " + r.arm + " promoted";
  if (r.by === "guardrail") return "guardrail: " + r.reason;
  return r.by;
}
function selectExperiment(id) {
  experiments.selected = id;
  renderExperimentList();
  var exp = experiments.list.filter(function (e) { return e.id === id; })[0];
  $("results").textContent = "Loading…";
  api("/admin/experiments/" + encodeURIComponent(id) + "/results").then(function (r) { renderResults(exp, r); })
    .catch(function (err) { showError($("results"), err); });
}
var VERDICTS = {
  better: ["better", "good", "significant, valid at any look: you can stop and promote it"],
  worse: ["worse", "bad", "significant, valid at any look: you can stop it"],
  inconclusive: ["no verdict yet", "", "keep it running; stopping now decides nothing"],
  untrusted: ["untrusted", "bad", "the sample ratio is off: fix assignment or logging first"],
  no_data: ["no data yet", "", "no measured requests in one of the arms"],
};
function renderSrm(srm) {
  var shares = srm.arms.map(function (a) { return a.arm + " " + pct(a.observed_share) + " (" + num(a.observed) + ")"; }).join(" / ");
  var wanted = srm.arms.map(function (a) { return pct(a.expected_share); }).join(" / ");
  var stat = srm.statistic === null ? "no requests yet" : "χ² = " + srm.statistic.toFixed(2) + ", df " + srm.df + ", " + pval(srm.p_value);
  if (srm.flagged) {
    return el("div", { id: "srm", class: "banner bad" }, [
      el("b", { text: "Sample-ratio mismatch. " }),
      "Requests per arm " + shares + " do not fit the configured " + wanted + " (" + stat + " < 0.001). Assignment or logging is broken; no verdict below can be trusted until the cause is found.",
    ]);
  }
  return el("div", { id: "srm", class: "banner ok" }, ["Sample ratio OK: " + shares + " against the configured " + wanted + " (" + stat + ")."]);
}
function verdictBlock(a, control) {
  var v = a.vs_control, f = v.fidelity, out = el("div", { class: "verdict-block", "data-arm": a.arm });
  var meta = VERDICTS[v.verdict];
  var line = el("p", { class: "verdict" }, [el("b", { text: a.arm }), " vs " + control + ": fidelity "]);
  if (f) {
    line.appendChild(el("b", { class: meta[1], text: pp(f.diff) }));
    line.appendChild(document.createTextNode(" "));
  }
  line.appendChild(badge(meta[0], v.verdict));
  line.appendChild(el("span", { class: "muted", text: " " + meta[2] }));
  out.appendChild(line);
  if (f && f.sequential) {
    out.appendChild(el("p", { class: "fixed" }, [
      "Always-valid " + Math.round((1 - f.sequential.alpha) * 100) + "% CI " + pp(f.sequential.ci[0]) + " to " + pp(f.sequential.ci[1]) + ", sequential " + pval(f.sequential.p_value) + ". ",
      el("span", { class: "muted", text: "Fixed-horizon (one look at a planned size only): 95% CI " + pp(f.fixed_horizon.ci95[0]) + " to " + pp(f.fixed_horizon.ci95[1]) + ", " + pval(f.fixed_horizon.p_value) + "." }),
    ]));
  }
  return out;
}
function renderResults(exp, r) {
  var box = $("results");
  box.textContent = "";
  box.appendChild(el("h2", {}, [exp.name, badge(r.state), el("span", { class: "muted", text: "  languages: " + exp.languages.join(", ") + " · control arm: " + r.control })]));
  if (r.stop_reason) {
    box.appendChild(el("div", { id: "stop-reason", class: "banner" + (r.stop_reason.by === "guardrail" ? " bad" : "") }, [
      el("b", { text: "Stopped " + when(r.stopped_at) + " UTC: " }), stopText(r.stop_reason),
    ]));
  }
  box.appendChild(renderSrm(r.srm));
  r.arms.forEach(function (a) { if (a.vs_control) box.appendChild(verdictBlock(a, r.control)); });
  box.appendChild(chart(r));
  box.appendChild(armTable(r));
  box.appendChild(el("h3", { text: "Differences from the control" }));
  box.appendChild(comparisonTable(r));
  box.appendChild(el("h3", { text: "Guardrails" }));
  box.appendChild(guardrailTable(r));
  box.appendChild(el("p", { class: "muted", text: "Verdicts: " + r.method.sequential + ", alpha " + r.method.alpha + "; fixed-horizon: " + r.method.fixed_horizon + "." }));
}
function armTable(r) {
  var rows = r.arms.map(function (a) {
    var ci = wilson(a.fidelity.matched, a.fidelity.measured);
    var srmArm = r.srm.arms.filter(function (s) { return s.arm === a.arm; })[0];
    return el("tr", { "data-arm": a.arm }, [
      el("td", {}, [el("b", { text: a.arm })].concat(a.arm === r.control ? [badge("control", "")] : [])),
      el("td", { class: "num", text: num(a.requests) }),
      el("td", { class: "num", text: pct(srmArm.observed_share) + " / " + pct(srmArm.expected_share) }),
      el("td", { class: "num", text: pct(a.fidelity.rate) + " (" + a.fidelity.matched + "/" + a.fidelity.measured + ")" }),
      el("td", { class: "num", text: ci ? pct(ci[0]) + " – " + pct(ci[1]) : "n/a" }),
      el("td", { class: "num", text: pct(a.errors.rate) + " (" + a.errors.count + ")" }),
      el("td", { class: "num", text: ms(a.latency.mean_ms) }),
      el("td", { class: "num", text: ms(a.latency.p95_ms) }),
      el("td", { class: "num", text: pct(a.feedback.rate) }),
      el("td", { class: "num", text: na(a.feedback.mean_score) ? "n/a" : a.feedback.mean_score.toFixed(2) }),
    ]);
  });
  return table("arm-table", ["Arm", "Requests", "Share (observed / configured)", "Fidelity", "Fidelity 95% CI", "Error rate", "Latency mean", "Latency p95", "Feedback rate", "Mean score"], rows, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
}
function comparisonTable(r) {
  var rows = [];
  r.arms.forEach(function (a) {
    if (!a.vs_control) return;
    [["fidelity", "Fidelity"], ["error_rate", "Error rate"], ["feedback_rate", "Feedback rate"]].forEach(function (m) {
      var c = a.vs_control[m[0]];
      var s = c && c.sequential;
      rows.push(el("tr", { "data-arm": a.arm, "data-metric": m[0] }, [
        el("td", {}, [el("b", { text: a.arm })]),
        el("td", { text: m[1] }),
        el("td", { class: "num", text: c ? pp(c.diff) : "n/a" }),
        el("td", { class: "num", text: s ? pp(s.ci[0]) + " to " + pp(s.ci[1]) : "n/a" }),
        el("td", { class: "num" }, s ? [pval(s.p_value), s.significant ? badge("significant", "ok") : null] : ["n/a"]),
        el("td", { class: "num muted", text: c ? pp(c.fixed_horizon.ci95[0]) + " to " + pp(c.fixed_horizon.ci95[1]) : "n/a" }),
        el("td", { class: "num muted", text: c ? pval(c.fixed_horizon.p_value) : "n/a" }),
      ]));
    });
  });
  return table("comparison-table", ["Arm", "Metric", "Δ vs control", "Always-valid 95% CI", "Sequential p", "Fixed-horizon 95% CI", "Fixed-horizon p"], rows, [2, 3, 4, 5, 6]);
}
function guardrailValue(metric, x) { return na(x) ? "n/a" : metric === "p95_latency" ? ms(x) : pct(x, 2); }
function guardrailTable(r) {
  if (!r.guardrails.declared.length) return el("p", { id: "guardrail-table", class: "muted", text: "No guardrails declared: this experiment never stops by itself." });
  var rows = [];
  r.arms.forEach(function (a) {
    if (!a.vs_control) return;
    a.vs_control.guardrails.forEach(function (g) {
      var status = g.status === "breached" && r.state === "running" ? "breached (stops at the next check)" : g.status;
      var bound = !g.interval ? "unbounded yet" : g.metric === "p95_latency"
        ? "arm ≥ " + ms(g.interval[0]) + ", control ≤ " + ms(g.interval[1])
        : pp(g.interval[0]) + " to " + pp(g.interval[1]);
      rows.push(el("tr", { "data-arm": a.arm, "data-metric": g.metric }, [
        el("td", {}, [el("b", { text: a.arm })]),
        el("td", { text: g.metric.replace("_", " ") }),
        el("td", {}, [badge(status, g.status)]),
        el("td", { class: "num", text: guardrailValue(g.metric, g.arm_value) }),
        el("td", { class: "num", text: guardrailValue(g.metric, g.control_value) }),
        el("td", { class: "num", text: g.metric === "p95_latency" ? "+" + g.margin + " ms" : pp(g.margin) }),
        el("td", { class: "num", text: bound }),
        el("td", { class: "num muted", text: g.alpha.toPrecision(2) }),
      ]));
    });
  });
  return table("guardrail-table", ["Arm", "Guardrail", "Status", "Arm", "Control", "Margin", "Always-valid bound", "Alpha"], rows, [3, 4, 5, 6, 7]);
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
    g.appendChild(svg("text", { x: cx, y: H - bottom + 38, "text-anchor": "middle", "font-size": 12, fill: "#5b6470" }, (control ? "control arm · " : "") + "n = " + a.fidelity.measured + " measured"));
    s.appendChild(g);
  });
  return s;
}
`;
