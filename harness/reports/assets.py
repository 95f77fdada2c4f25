"""Inline CSS and JavaScript shared by the HTML report and the HTML matrix.

Everything is inlined: the pages load nothing from the network (their Content-Security-Policy
forbids it), use only system fonts, and work from `file://` and from a CI artifact.
"""

from __future__ import annotations

import base64
import hashlib

CSS = """
:root {
  --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da;
  --pass-bg: #dafbe1; --pass-fg: #116329;
  --ns-bg: #fff8c5; --ns-fg: #7d4e00;
  --fail-bg: #ffebe9; --fail-fg: #a40e26;
  --uns-bg: #eff2f5; --uns-fg: #59636e;
  --to-bg: #fff1e5; --to-fg: #953800;
  --err-bg: #82071e; --err-fg: #ffffff;
  --nc-bg: #ffffff; --nc-fg: #818b98;
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
  font-size: 12.5px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.wrap { max-width: 1240px; margin: 0 auto; padding: 0 20px; }
header.top { background: var(--soft); border-bottom: 1px solid var(--line); padding: 18px 0 14px; }
.headline { display: flex; align-items: center; gap: 14px; flex-wrap: wrap; }
h1 { font-size: 20px; margin: 0; font-weight: 600; }
h1 .sub { color: var(--muted); font-weight: 400; }
h2 { font-size: 17px; margin: 26px 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 8px; }
.verdict { font-weight: 700; letter-spacing: .04em; padding: 5px 12px; border-radius: 6px; font-size: 14px; }
.verdict.ok { background: var(--pass-fg); color: #fff; }
.verdict.bad { background: var(--fail-fg); color: #fff; }
.verdict.warn { background: #9a6700; color: #fff; }
.verdict.known { background: #6e7781; color: #fff; }
.meta { color: var(--muted); margin-top: 6px; font-size: 13px; }
.meta { display: flex; flex-wrap: wrap; row-gap: 2px; column-gap: 18px; }
.meta span { white-space: nowrap; max-width: 100%; overflow: hidden; text-overflow: ellipsis; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 12px; }
.chip { border: 1px solid var(--line); background: #fff; border-radius: 999px; padding: 3px 11px 3px 9px;
  font: inherit; font-size: 13px; cursor: pointer; display: inline-flex; gap: 6px; align-items: center; }
.chip b { font-variant-numeric: tabular-nums; }
.chip.active { outline: 2px solid var(--accent); outline-offset: 1px; }
.chip.zero { opacity: .55; }
.dot { width: 10px; height: 10px; border-radius: 50%; display: inline-block; border: 1px solid rgba(0,0,0,.15); }
.banner { margin: 14px 0 0; padding: 10px 14px; border-radius: 6px; border: 1px solid; }
.banner.partial { background: var(--ns-bg); border-color: #d4a72c; color: #4d2d00; }
.banner.stale { background: var(--fail-bg); border-color: #ff8182; color: #82071e; }
.banner.note { background: var(--soft); border-color: var(--line); color: var(--muted); }
.banner ul { margin: 6px 0 0; padding-left: 20px; }
nav.filters { position: sticky; top: 0; z-index: 5; background: rgba(255,255,255,.96);
  border-bottom: 1px solid var(--line); padding: 9px 0; }
nav.filters .wrap { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
nav.filters label { color: var(--muted); font-size: 13px; display: inline-flex; gap: 6px; align-items: center; }
nav.filters select, nav.filters input { font: inherit; font-size: 13px; padding: 4px 8px;
  border: 1px solid var(--line); border-radius: 6px; background: #fff; }
nav.filters input[type=search] { width: 280px; }
#shown { margin-left: auto; color: var(--muted); font-size: 13px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600;
  white-space: nowrap; border: 1px solid transparent; }
.o-pass { background: var(--pass-bg); color: var(--pass-fg); }
.o-non-strict { background: var(--ns-bg); color: var(--ns-fg); }
.o-fail { background: var(--fail-bg); color: var(--fail-fg); }
.o-unsupported { background: var(--uns-bg); color: var(--uns-fg); }
.o-timeout { background: var(--to-bg); color: var(--to-fg); }
.o-error { background: var(--err-bg); color: var(--err-fg); }
.o-not-covered { background: var(--nc-bg); color: var(--nc-fg); border: 1px dashed #afb8c1; }
.dot.o-pass { background: var(--pass-fg); } .dot.o-non-strict { background: #d4a72c; }
.dot.o-fail { background: #cf222e; } .dot.o-unsupported { background: #afb8c1; }
.dot.o-timeout { background: #e16f24; } .dot.o-error { background: var(--err-bg); }
.dot.o-not-covered { background: #fff; border: 1px dashed #818b98; }
.dot.o-known { background: #8c959f; }
.known { background: #eaeef2; color: #424a53; }
.tag { display: inline-block; font-size: 11.5px; padding: 0 6px; border-radius: 4px; background: var(--soft);
  border: 1px solid var(--line); color: var(--muted); margin: 2px 4px 0 0; white-space: nowrap; }
.lvl { font-size: 11.5px; font-weight: 700; padding: 1px 6px; border-radius: 4px; white-space: nowrap; }
.lvl-MUST { background: #ddf4ff; color: #0550ae; }
.lvl-SHOULD { background: #fbefff; color: #8250df; }
.lvl-INFO, .lvl-other { background: var(--soft); color: var(--muted); }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; color: var(--muted);
  font-weight: 600; padding: 6px 8px; border-bottom: 1px solid var(--line); background: #fff; }
td { padding: 6px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
table.reqs, table.cases { table-layout: fixed; }
table.reqs th:nth-child(1), table.cases th:nth-child(1) { width: 132px; }
table.reqs th:nth-child(2) { width: 270px; }
table.reqs th:nth-child(3) { width: 88px; }
table.reqs th:nth-child(5) { width: 250px; }
table.reqs td, table.cases td { overflow-wrap: anywhere; }
table.reqs .tag, table.cases .tag { white-space: normal; }
table.cases th:nth-child(2) { width: 300px; }
table.cases th:nth-child(3) { width: 90px; }
table.cases th:nth-child(4) { width: 80px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.reqtext { color: var(--muted); font-style: italic; margin-top: 4px; }
tr.req:hover, tr.caserow:hover { background: #f6f8fa; }
tr.o-row-not-covered td { color: var(--muted); }
.area-head { display: flex; align-items: baseline; gap: 10px; flex-wrap: wrap; }
.area-head .counts { font-size: 12.5px; color: var(--muted); display: inline-flex; gap: 10px; }
.area-head .counts span { display: inline-flex; gap: 4px; align-items: center; }
.caselinks a { display: inline-block; margin: 0 6px 2px 0; font-family: ui-monospace, Menlo, Consolas, monospace;
  font-size: 12px; }
.caselinks a.l-fail, .caselinks a.l-error { color: var(--fail-fg); font-weight: 600; }
.caselinks a.l-timeout { color: var(--to-fg); font-weight: 600; }
.caselinks a.l-non-strict { color: var(--ns-fg); font-weight: 600; }
.caselinks a.l-unsupported { color: var(--muted); }
details.case { border: 1px solid var(--line); border-radius: 8px; margin: 8px 0; background: #fff; }
details.case > summary { cursor: pointer; padding: 9px 12px; display: flex; gap: 10px; align-items: center;
  flex-wrap: wrap; list-style: none; }
details.case > summary::-webkit-details-marker { display: none; }
details.case > summary::before { content: "▸"; color: var(--muted); width: 10px; }
details.case[open] > summary::before { content: "▾"; }
details.case[open] > summary { border-bottom: 1px solid var(--line); background: var(--soft);
  border-radius: 8px 8px 0 0; }
details.case.target { box-shadow: 0 0 0 2px var(--accent); }
summary .cid { font-weight: 600; word-break: break-all; }
summary .first { color: var(--muted); flex: 1 1 320px; min-width: 0; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
summary .dur { color: var(--muted); font-size: 12px; margin-left: auto; }
.body { padding: 12px 14px 14px; }
.violation { border-left: 3px solid #cf222e; padding: 4px 0 4px 12px; margin: 0 0 14px; }
.violation.SHOULD { border-left-color: #d4a72c; }
.violation.INFO { border-left-color: #8c959f; }
.violation .vhead { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.violation .msg { margin: 6px 0; }
.eo { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
.eo > div { min-width: 0; }
.eo .lab { font-size: 11.5px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin-bottom: 3px; }
pre { margin: 0; padding: 8px 10px; background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  overflow: auto; max-height: 320px; white-space: pre-wrap; word-break: break-word; }
pre.exp { background: #f0fff4; border-color: #aceebb; }
pre.obs { background: #fff5f5; border-color: #ffcecb; }
.errbox { margin-bottom: 12px; }
.sect { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 16px 0 6px;
  font-weight: 600; }
table.timeline td, table.timeline th { padding: 3px 8px; font-size: 12.5px; }
table.timeline td.num { text-align: right; font-variant-numeric: tabular-nums; color: var(--muted); white-space: nowrap; }
table.timeline td.val code { word-break: break-all; }
table.timeline tr.t-fail td, table.timeline tr.t-timeout td { background: #fff8f0; }
table.timeline tr.t-event td.ty { color: #0550ae; }
table.timeline tr.hit td { background: var(--fail-bg); }
table.timeline tr.hit td:first-child { box-shadow: inset 3px 0 0 #cf222e; }
table.timeline tr.gap td { text-align: center; color: var(--muted); background: #fff; font-style: italic; }
.pill { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 999px; }
.pill.t-invoke { background: #eaeef2; } .pill.t-ok { background: var(--pass-bg); color: var(--pass-fg); }
.pill.t-fail { background: var(--fail-bg); color: var(--fail-fg); } .pill.t-timeout { background: var(--to-bg); color: var(--to-fg); }
.pill.t-event { background: #ddf4ff; color: #0550ae; } .pill.t-info { background: var(--soft); color: var(--muted); }
.replay { display: flex; gap: 8px; align-items: stretch; }
.replay code { flex: 1; display: block; padding: 7px 10px; background: #0d1117; color: #e6edf3; border-radius: 6px;
  overflow-x: auto; white-space: pre; }
button.copy { font: inherit; font-size: 12.5px; border: 1px solid var(--line); background: #fff; border-radius: 6px;
  padding: 0 12px; cursor: pointer; }
button.copy:hover { background: var(--soft); }
.empty { color: var(--muted); padding: 10px 0; }
footer { color: var(--muted); font-size: 12px; padding: 30px 0 40px; }
table.matrix th.ad { text-align: center; text-transform: none; font-size: 12.5px; color: var(--fg); }
table.matrix { table-layout: fixed; }
table.matrix th:nth-child(2) { width: 86px; }
table.matrix th.ad { width: 140px; }
table.matrix td.cell { text-align: center; font-size: 12px; font-weight: 600; vertical-align: middle;
  border: 2px solid #fff; }
table.matrix td.cell.o-not-covered { border: 2px solid #fff; background: repeating-linear-gradient(
  135deg, #fff, #fff 6px, #f6f8fa 6px, #f6f8fa 12px); }
table.matrix thead th { position: sticky; top: 49px; z-index: 2; }
table.matrix tr.arearow td { background: var(--soft); font-weight: 600; }
@media (max-width: 800px) { .eo { grid-template-columns: 1fr; } table.reqs td:nth-child(5) { display: none; } }
@media print { nav.filters { display: none; } details.case { break-inside: avoid; } }
"""

JS_REPORT = r"""
(function () {
  "use strict";
  function all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  var PROBLEMS = ["fail", "non-strict", "timeout", "error"];
  var fo = document.getElementById("f-outcome"), fl = document.getElementById("f-level"),
      ft = document.getElementById("f-text"), shown = document.getElementById("shown");
  function okOutcome(el, want) {
    if (want === "all") return true;
    var o = el.getAttribute("data-outcome");
    if (want === "problems") return PROBLEMS.indexOf(o) >= 0;
    if (want === "known") return el.getAttribute("data-known") === "1";
    return o === want;
  }
  function okLevel(el, want) {
    if (want === "all") return true;
    return (" " + (el.getAttribute("data-levels") || "") + " ").indexOf(" " + want + " ") >= 0;
  }
  function okText(el, q) { return !q || (el.getAttribute("data-search") || "").indexOf(q) >= 0; }
  function apply() {
    if (!fo) return;
    var o = fo.value, l = fl.value, q = ft.value.trim().toLowerCase(), nreq = 0, nvis = 0;
    all(".filterable").forEach(function (el) {
      var ok = okOutcome(el, o) && okLevel(el, l) && okText(el, q);
      el.hidden = !ok;
      if (el.classList.contains("req")) { nreq++; if (ok) nvis++; }
    });
    all(".group").forEach(function (g) {
      g.hidden = all(".filterable", g).every(function (r) { return r.hidden; });
    });
    all(".none-shown").forEach(function (n) {
      var sec = n.parentNode;
      n.hidden = all(".filterable", sec).some(function (r) { return !r.hidden; });
    });
    all(".chip").forEach(function (c) { c.classList.toggle("active", c.getAttribute("data-outcome") === o); });
    if (shown) shown.textContent = nvis + " of " + nreq + " requirements shown";
  }
  [fo, fl, ft].forEach(function (el) { if (el) { el.addEventListener("input", apply); el.addEventListener("change", apply); } });
  all(".chip").forEach(function (c) {
    c.addEventListener("click", function () {
      var v = c.getAttribute("data-outcome");
      fo.value = fo.value === v ? "all" : v;
      apply();
    });
  });
  // The fragment holds `key=value` pairs joined by `&` (values URL-encoded):
  // open=<case_id> opens that case's details; outcome=, level=, q= preset the filters.
  function hashParams() {
    var out = {}, h = window.location.hash.replace(/^#/, "");
    h.split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i <= 0) return;
      try { out[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1)); } catch (e) { /* ignore */ }
    });
    return out;
  }
  function setSelect(sel, value) {
    if (!sel || value === undefined) return;
    for (var i = 0; i < sel.options.length; i++) {
      if (sel.options[i].value === value) { sel.value = value; return; }
    }
  }
  function openFromHash() {
    var p = hashParams();
    setSelect(fo, p.outcome);
    setSelect(fl, p.level);
    if (ft && p.q !== undefined) ft.value = p.q;
    apply();
    if (p.open === undefined) return;
    all("details.case").forEach(function (d) {
      var hit = d.getAttribute("data-case-id") === p.open;
      d.classList.toggle("target", hit);
      if (hit) {
        d.hidden = false;
        d.open = true;
        if (d.scrollIntoView) d.scrollIntoView({ block: "nearest" });
      }
    });
  }
  window.addEventListener("hashchange", openFromHash);
  all("button.copy").forEach(function (b) {
    b.addEventListener("click", function () {
      var text = b.parentNode.querySelector("code").textContent;
      function done() { b.textContent = "Copied"; setTimeout(function () { b.textContent = "Copy"; }, 1500); }
      function fallback() {
        var ta = document.createElement("textarea");
        ta.value = text; document.body.appendChild(ta); ta.select();
        try { document.execCommand("copy"); done(); } catch (e) { /* nothing more to try */ }
        document.body.removeChild(ta);
      }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, fallback);
      } else { fallback(); }
    });
  });
  document.documentElement.setAttribute("data-js", "ready");
  openFromHash();
})();
"""


def script_hash(js: str) -> str:
    """The CSP source (`'sha256-…'`) that allows exactly this inline script."""
    digest = hashlib.sha256(js.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def csp(js: str) -> str:
    """A Content-Security-Policy that allows the page's own inline style and script, nothing else
    (no network, no inline event handlers: defence in depth behind the escaping)."""
    return (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"script-src {script_hash(js)}; base-uri 'none'; form-action 'none'")
