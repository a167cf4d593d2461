/**
 * The languages and adapters views, both from GET /admin/registry: each language's active delta,
 * its scale, the previous one kept for rollback and the recorded evaluation figures; each adapter
 * with its language, size, content hash, base-model fingerprint, where it came from and where it
 * is in use.
 */
export const SCRIPT_REGISTRY = `
var registry = null;
function withRegistry(render, where) {
  (registry ? Promise.resolve(registry) : api("/admin/registry").then(function (r) { registry = r; return r; }))
    .then(render).catch(function (err) { showError($(where), err); });
}
function metricChips(m) {
  if (!m) return el("span", { class: "muted", text: "none recorded" });
  var keys = Object.keys(m);
  if (!keys.length) return el("span", { class: "muted", text: "none recorded" });
  return el("span", {}, keys.map(function (k) { return el("span", { class: "chip", text: k + " " + figure(m[k]) }); }));
}
function deltaCell(d) {
  if (!d) return el("td", { class: "muted", text: "base model" });
  return el("td", {}, [
    el("b", { class: "mono", text: d.delta_id }),
    d.kind ? badge(d.kind, "") : null,
    el("div", { class: "muted mono", text: d.adapter_id || "no adapter row" }),
  ]);
}
LOADERS.languages = function () {
  withRegistry(function (r) {
    var box = $("languages");
    box.textContent = "";
    if (!r.languages.length) { box.appendChild(el("p", { class: "muted", text: "Every language is served by the base model: none has a delta yet." })); return; }
    var rows = r.languages.map(function (l) {
      return el("tr", { "data-language": l.language }, [
        el("td", {}, [el("b", { text: l.language })]),
        deltaCell(l.active),
        el("td", { class: "num", text: l.active ? "× " + figure(l.active.scale) : "n/a" }),
        el("td", { class: "wrap" }, [metricChips(l.active && l.active.metrics)]),
        l.previous ? el("td", {}, [el("span", { class: "mono", text: l.previous.delta_id }), el("span", { class: "muted", text: " × " + figure(l.previous.scale) }), el("div", { class: "wrap" }, [metricChips(l.previous.metrics)])]) : el("td", { class: "muted", text: "none" }),
        l.experiment ? el("td", {}, [el("b", { text: l.experiment.name }), el("div", { class: "muted", text: "arms " + l.experiment.arms.join(" / ") })]) : el("td", { class: "muted", text: "none" }),
        el("td", { class: "muted", text: l.updated_at ? when(l.updated_at) : "n/a" }),
      ]);
    });
    box.appendChild(table("language-table", ["Language", "Active delta", "Scale", "Evaluation figures (manifest)", "Previous (rollback target)", "Running experiment (its arms replace the active delta)", "Changed (UTC)"], rows, [2]));
  }, "languages");
};
function useChip(u) {
  if (u.as === "arm") return el("span", { class: "chip", text: "arm " + u.arm + " × " + figure(u.scale) + " of " + u.experiment_name + " (" + u.state + ")" });
  return el("span", { class: "chip", text: u.as + " for " + u.language + " × " + figure(u.scale) });
}
LOADERS.adapters = function () {
  withRegistry(function (r) {
    var box = $("adapters");
    box.textContent = "";
    if (!r.adapters.length) { box.appendChild(el("p", { class: "muted", text: "No adapters yet: upload one (POST /admin/adapters) or register a Lens job's." })); return; }
    var rows = r.adapters.map(function (a) {
      return el("tr", { "data-adapter": a.id }, [
        el("td", {}, [el("b", { class: "mono", text: a.delta_id }), el("div", { class: "muted mono", text: a.id })]),
        el("td", {}, [el("b", { text: a.language }), " · " + a.kind, el("div", { class: "muted", text: "layers " + a.layers.join(",") + " · rank " + a.rank })]),
        el("td", { class: "num", text: bytes(a.size) }),
        el("td", { class: "mono", title: a.sha256 + " / " + a.base_model.fingerprint }, [
          short(a.sha256, 12),
          el("div", { class: "muted", text: a.base_model.id + " " + short(a.base_model.fingerprint.replace("sha256:", ""), 8) }),
        ]),
        el("td", {}, [
          a.source.kind === "lens_job" ? "trained (" + a.source.job_kind + " " + a.source.job_id + ")" : "uploaded",
          el("div", { class: "muted", text: when(a.created_at) + " UTC" }),
        ]),
        el("td", { class: "uses" }, a.in_use.length ? a.in_use.map(function (u) { return el("div", {}, [useChip(u)]); }) : [el("span", { class: "muted", text: "not in use" })]),
        el("td", { class: "wrap" }, [metricChips(a.metrics)]),
      ]);
    });
    box.appendChild(table("adapter-table", ["Adapter", "Language · kind", "Size", "SHA-256 / base model", "Source", "In use", "Evaluation figures"], rows, [2]));
  }, "adapters");
};
`;
