/**
 * The traffic view: per language, hourly requests (stacked, base model vs edited), fidelity and p95
 * latency, each as a small SVG chart, from GET /admin/traffic (SQL aggregates).
 */
export const SCRIPT_TRAFFIC = `
var BASE_COLOUR = "#8a94a3", EDITED_COLOUR = "#2f6fde";
LOADERS.traffic = function () { loadTraffic(24); };
document.addEventListener("DOMContentLoaded", function () {
  [24, 72, 168].forEach(function (h) { $("hours-" + h).addEventListener("click", function () { loadTraffic(h); }); });
});
function loadTraffic(hours) {
  var box = $("traffic");
  box.textContent = "Loading…";
  [24, 72, 168].forEach(function (h) { $("hours-" + h).setAttribute("aria-selected", h === hours ? "true" : "false"); });
  api("/admin/traffic?hours=" + hours).then(function (t) { renderTraffic(t); }).catch(function (err) { showError(box, err); });
}
function hourLabel(ts, span) {
  var d = new Date(ts * 1000).toISOString();
  return span > 48 ? d.slice(5, 10) : d.slice(11, 16);
}
function smallChart(cls, title, t, series, yMax, yFormat, kind) {
  var W = 380, H = 170, left = 52, right = 10, top = 26, bottom = 26;
  var plotW = W - left - right, plotH = H - top - bottom;
  var hours = (t.until - t.since) / 3600, slot = plotW / hours;
  var s = svg("svg", { class: "traffic-chart " + cls, width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title });
  s.appendChild(svg("text", { x: left, y: 16, "font-size": 13, "font-weight": 600, fill: "#1b1f24" }, title));
  var y = function (v) { return top + plotH * (1 - v / yMax); };
  [0, 0.5, 1].forEach(function (f) {
    s.appendChild(svg("line", { x1: left, x2: W - right, y1: y(yMax * f), y2: y(yMax * f), stroke: f === 0 ? "#8a94a3" : "#e3e7ec" }));
    s.appendChild(svg("text", { x: left - 6, y: y(yMax * f) + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6470" }, yFormat(yMax * f)));
  });
  var step = hours <= 24 ? 6 : 24;
  for (var i = 0; i < hours; i += step) {
    s.appendChild(svg("text", { x: left + i * slot, y: H - 8, "text-anchor": "middle", "font-size": 11, fill: "#5b6470" }, hourLabel(t.since + i * 3600, hours)));
  }
  var x = function (hour) { return left + ((hour - t.since) / 3600 + 0.5) * slot; };
  if (kind === "bars") {
    var bw = Math.max(1, slot * 0.8);
    series.base.forEach(function (p) {
      var e = series.edited.filter(function (q) { return q.hour === p.hour; })[0];
      var baseTop = y(p.requests);
      s.appendChild(svg("rect", { class: "bar base", x: x(p.hour) - bw / 2, y: baseTop, width: bw, height: y(0) - baseTop, fill: BASE_COLOUR }));
      if (e) s.appendChild(svg("rect", { class: "bar edited", x: x(p.hour) - bw / 2, y: y(p.requests + e.requests), width: bw, height: baseTop - y(p.requests + e.requests), fill: EDITED_COLOUR }));
    });
    series.edited.forEach(function (e) {
      if (series.base.some(function (p) { return p.hour === e.hour; })) return;
      s.appendChild(svg("rect", { class: "bar edited", x: x(e.hour) - bw / 2, y: y(e.requests), width: bw, height: y(0) - y(e.requests), fill: EDITED_COLOUR }));
    });
  } else {
    [["base", BASE_COLOUR], ["edited", EDITED_COLOUR]].forEach(function (k) {
      var pts = series[k[0]].filter(function (p) { return !na(p[kind]); });
      if (!pts.length) return;
      s.appendChild(svg("polyline", { class: "line " + k[0], fill: "none", stroke: k[1], "stroke-width": 2, points: pts.map(function (p) { return x(p.hour) + "," + y(p[kind]); }).join(" ") }));
      pts.forEach(function (p) { s.appendChild(svg("circle", { cx: x(p.hour), cy: y(p[kind]), r: 2.5, fill: k[1] })); });
    });
  }
  return s;
}
function niceMax(v) {
  if (v <= 0) return 1;
  var m = Math.pow(10, Math.floor(Math.log(v) / Math.LN10));
  var steps = [1, 2, 2.5, 5, 10];
  for (var i = 0; i < steps.length; i++) if (steps[i] * m >= v) return steps[i] * m;
  return 10 * m;
}
function renderTraffic(t) {
  var box = $("traffic");
  box.textContent = "";
  var byLanguage = {};
  t.points.forEach(function (p) {
    var l = byLanguage[p.language] || (byLanguage[p.language] = { language: p.language, base: [], edited: [], requests: 0, matched: [0, 0], measured: [0, 0] });
    l[p.edited ? "edited" : "base"].push(p);
    l.requests += p.requests;
    l.matched[p.edited ? 1 : 0] += p.matched;
    l.measured[p.edited ? 1 : 0] += p.measured;
  });
  var languages = Object.keys(byLanguage).map(function (k) { return byLanguage[k]; }).sort(function (a, b) { return b.requests - a.requests; });
  if (!languages.length) { box.appendChild(el("p", { class: "muted", text: "No requests in the last " + t.hours + " hours." })); return; }
  box.appendChild(el("p", { class: "legend" }, ["Hourly, UTC, last " + t.hours + " hours.", el("i", { style: "background:" + BASE_COLOUR }), "base model", el("i", { style: "background:" + EDITED_COLOUR }), "edited (a delta applied)"]));
  languages.forEach(function (l) {
    var all = l.base.concat(l.edited);
    var perHour = {};
    all.forEach(function (p) { perHour[p.hour] = (perHour[p.hour] || 0) + p.requests; });
    var maxRequests = niceMax(Math.max.apply(null, Object.keys(perHour).map(function (h) { return perHour[h]; })));
    var maxP95 = niceMax(Math.max.apply(null, all.map(function (p) { return p.p95_ms; })));
    var fid = function (i) { return l.measured[i] ? pct(l.matched[i] / l.measured[i]) : "n/a"; };
    var card = el("div", { class: "lang-card", "data-language": l.language }, [
      el("h3", {}, [el("b", { text: l.language }), el("span", { class: "muted", text: "  " + num(l.requests) + " requests · fidelity base " + fid(0) + ", edited " + fid(1) })]),
      el("div", { class: "cards" }, [
        smallChart("requests", "Requests per hour", t, l, maxRequests, function (v) { return num(v); }, "bars"),
        smallChart("fidelity", "Fidelity", t, l, 1, function (v) { return Math.round(v * 100) + "%"; }, "fidelity"),
        smallChart("latency", "p95 latency", t, l, maxP95, function (v) { return Math.round(v) + " ms"; }, "p95_ms"),
      ]),
    ]);
    box.appendChild(card);
  });
}
`;
