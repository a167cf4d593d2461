/**
 * The console's shared browser code: the key (sessionStorage only), calls to the admin API, DOM
 * and SVG helpers, number formats, and switching between views. Plain ES5 in a string: the page
 * has no build step. (No backslashes or template literals in here: this is itself a template.)
 */
export const SCRIPT_CORE = `
"use strict";
var KEY_NAME = "lens-admin-key";
var VIEWS = ["experiments", "languages", "adapters", "traffic"];
var LOADERS = {};
var loaded = {};
function $(id) { return document.getElementById(id); }
function el(tag, attrs, children) {
  var e = document.createElement(tag);
  for (var k in attrs || {}) { if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]); }
  (children || []).forEach(function (c) { if (c !== null && c !== undefined) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
  return e;
}
var SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  var e = document.createElementNS(SVGNS, tag);
  for (var k in attrs) e.setAttribute(k, String(attrs[k]));
  if (text !== undefined) e.textContent = text;
  return e;
}
function na(x) { return x === null || x === undefined; }
function pct(x, digits) { return na(x) ? "n/a" : (x * 100).toFixed(digits === undefined ? 1 : digits) + "%"; }
function pp(x) { return na(x) ? "n/a" : (x >= 0 ? "+" : "−") + Math.abs(x * 100).toFixed(1) + " pp"; }
function ms(x) { return na(x) ? "n/a" : Math.round(x) + " ms"; }
function pval(p) { return na(p) ? "n/a" : p < 0.001 ? "p < 0.001" : "p = " + p.toFixed(3); }
function num(x) { return na(x) ? "n/a" : Math.round(x).toLocaleString("en-US"); }
function bytes(n) { return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(1) + " MiB"; }
function figure(x) { return Math.abs(x) >= 1000 || Number.isInteger(x) ? String(x) : Number(x.toPrecision(4)).toString(); }
function when(ts) { return na(ts) ? "n/a" : new Date(ts * 1000).toISOString().slice(0, 16).replace("T", " "); }
function short(s, n) { return s.length > n ? s.slice(0, n) + "…" : s; }
function badge(text, cls) { return el("span", { class: "badge " + (cls || text), text: text }); }
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
function table(id, heads, rows, numeric) {
  var thead = el("tr", {}, heads.map(function (h, i) { return el("th", { class: numeric && numeric.indexOf(i) >= 0 ? "num" : "", text: h }); }));
  var attrs = id ? { id: id } : {};
  return el("table", attrs, [el("thead", {}, [thead]), el("tbody", {}, rows)]);
}
function setKey() {
  var v = $("key").value.trim();
  if (!v) return;
  sessionStorage.setItem(KEY_NAME, v);
  $("key").value = "";
  start();
}
function forget() { sessionStorage.removeItem(KEY_NAME); location.reload(); }
function currentView() {
  var h = location.hash.replace("#", "");
  return VIEWS.indexOf(h) >= 0 ? h : "experiments";
}
function showView(view) {
  VIEWS.forEach(function (v) {
    $("view-" + v).hidden = v !== view;
    $("tab-" + v).setAttribute("aria-selected", v === view ? "true" : "false");
  });
  if (!loaded[view]) { loaded[view] = true; LOADERS[view](); }
}
function start() {
  var has = !!key();
  $("login").hidden = has;
  $("logout").hidden = !has;
  $("content").hidden = !has;
  $("tabs").hidden = !has;
  if (!has) { $("key").focus(); return; }
  showView(currentView());
}
document.addEventListener("DOMContentLoaded", function () {
  $("use-key").addEventListener("click", setKey);
  $("key").addEventListener("keydown", function (e) { if (e.key === "Enter") setKey(); });
  $("logout").addEventListener("click", forget);
  VIEWS.forEach(function (v) {
    $("tab-" + v).addEventListener("click", function () { history.replaceState(null, "", "#" + v); showView(v); });
  });
  start();
});
`;
