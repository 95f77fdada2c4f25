"""Results across adapters (Autobahn / wpt.fyi shape) and across workers of one adapter.

* `merge(runs) -> Matrix`: adapters as columns (an adapter run with a `protocol` option is
  labelled with it, e.g. `ably-js (msgpack)`); requirements (grouped by area) and cases as
  rows; a cell is the outcome of that requirement or case for that adapter.
* `write_matrix(runs, out_dir)` writes `matrix.html` (self-contained, coloured cells, filters)
  and `matrix.md`.
* `merge_worker_results(runs) -> RunResult`: the partial results of several workers of the SAME
  adapter (pytest-xdist) as one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from presence_conformance.harness.reports.common import (
    OUTCOME_ORDER,
    CatalogueView,
    RequirementStatus,
    Verdict,
    load_catalogue,
    outcome_counts,
    requirement_statuses,
    unique_labels,
    verdict,
    write_atomic,
)
from presence_conformance.harness.reports.html_report import esc, page, slug
from presence_conformance.harness.reports.markdown import EMOJI, MAX_BYTES, md_code, md_text
from presence_conformance.harness.results import SEVERITY, CaseResult, RunResult


@dataclass
class Matrix:
    """Outcomes of several runs side by side.

    `columns` are the column labels (adapter names, made unique); `requirements[req_id][column]`
    is a `RequirementStatus` (NOT_COVERED when that run has no case for it); `cases[case_id]
    [column]` the `CaseResult`, absent when that adapter did not run the case.
    """

    columns: list[str]
    runs: dict[str, RunResult]
    view: CatalogueView
    requirements: dict[str, dict[str, RequirementStatus]] = field(default_factory=dict)
    cases: dict[str, dict[str, CaseResult]] = field(default_factory=dict)
    verdicts: dict[str, Verdict] = field(default_factory=dict)

    def requirement_outcome(self, req_id: str, column: str) -> str:
        return self.requirements[req_id][column].outcome

    def case_outcome(self, case_id: str, column: str) -> str | None:
        c = self.cases.get(case_id, {}).get(column)
        return c.outcome.value if c else None

    def differs(self, req_id: str) -> bool:
        """True when the adapters do not all have the same outcome for `req_id`."""
        return len({s.outcome for s in self.requirements[req_id].values()}) > 1


def merge(runs: list[RunResult], catalogue: Any = None, strict: bool = False) -> Matrix:
    """Put `runs` side by side (one column per run, in the given order)."""
    view = load_catalogue(catalogue, runs)
    columns = unique_labels([column_name(r) for r in runs])
    m = Matrix(columns=columns, runs=dict(zip(columns, runs, strict=True)), view=view)
    for col, run in m.runs.items():
        m.verdicts[col] = verdict(run, strict=strict)
        for rid, status in requirement_statuses(run, view).items():
            m.requirements.setdefault(rid, {})[col] = status
        for case in run.cases:
            m.cases.setdefault(case.case_id, {})[col] = case
    m.cases = dict(sorted(m.cases.items()))
    return m


def column_name(run: RunResult) -> str:
    """A run's column label: the adapter's name, with its wire format when the run chose one
    (`--adapter-option protocol=msgpack` -> "ably-js (msgpack)"), so that one SDK in both
    formats gets two columns that say which is which."""
    protocol = run.adapter_options.get("protocol")
    return f"{run.adapter} ({protocol})" if protocol else run.adapter


# --------------------------------------------------------------------------------------------
# Workers of one adapter
# --------------------------------------------------------------------------------------------


def merge_worker_results(runs: list[RunResult]) -> RunResult:
    """One `RunResult` from the partial results of several workers of the same adapter.

    Cases are concatenated and sorted by case ID; a case reported by more than one worker keeps
    its worst result. The run starts at the earliest start, finishes at the latest finish and is
    partial if any worker's part is. ValueError if the runs are of different adapters.
    """
    if not runs:
        raise ValueError("merge_worker_results: no results to merge")
    adapters = sorted({r.adapter for r in runs})
    if len(adapters) > 1:
        raise ValueError(f"merge_worker_results: results of different adapters {adapters}; "
                         "use merge() for a matrix across adapters")
    by_id: dict[str, CaseResult] = {}
    for run in runs:
        for case in run.cases:
            prev = by_id.get(case.case_id)
            if prev is None or SEVERITY.index(case.outcome) < SEVERITY.index(prev.outcome):
                by_id[case.case_id] = case
    reasons = list(dict.fromkeys(r.partial_reason for r in runs if r.partial and r.partial_reason))
    options: dict[str, str] = {}
    for run in runs:
        for k, v in run.adapter_options.items():
            options.setdefault(k, v)
    started = [r.started for r in runs if r.started]
    return RunResult(
        adapter=adapters[0],
        cases=[by_id[k] for k in sorted(by_id)],
        started=min(started, default=0.0),
        finished=max((r.finished for r in runs), default=0.0),
        partial=any(r.partial for r in runs),
        partial_reason="; ".join(reasons) or None,
        harness_version=next((r.harness_version for r in runs if r.harness_version), ""),
        adapter_options=options,
    )


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------

_MATRIX_JS = r"""
(function () {
  "use strict";
  function all(sel) { return Array.prototype.slice.call(document.querySelectorAll(sel)); }
  var ft = document.getElementById("f-text"), fd = document.getElementById("f-diff"),
      fp = document.getElementById("f-problems");
  function apply() {
    var q = ft.value.trim().toLowerCase();
    all("tr.row").forEach(function (tr) {
      var ok = (!q || tr.getAttribute("data-search").indexOf(q) >= 0)
        && (!fd.checked || tr.getAttribute("data-differs") === "1")
        && (!fp.checked || tr.getAttribute("data-problem") === "1");
      tr.hidden = !ok;
    });
    all("tr.arearow").forEach(function (a) {
      var n = a.nextElementSibling, any = false;
      while (n && !n.classList.contains("arearow")) { if (!n.hidden) any = true; n = n.nextElementSibling; }
      a.hidden = !any;
    });
  }
  [ft, fd, fp].forEach(function (el) { el.addEventListener("input", apply); el.addEventListener("change", apply); });
  document.documentElement.setAttribute("data-js", "ready");
  apply();
})();
"""

PROBLEMS = {"fail", "non-strict", "timeout", "error"}


def _cell_html(outcome: str | None, known: bool = False) -> str:
    if outcome is None:
        return '<td class="cell"><span class="tag">not run</span></td>'
    return f'<td class="cell o-{slug(outcome)}" title="{esc(outcome)}">' \
           f'{esc(outcome)}{" (known)" if known else ""}</td>'


def _verdict_badge(v: Verdict) -> str:
    cls = {"conforming": "o-pass", "known-deviations": "known", "not-conforming": "o-fail",
           "incomplete": "o-non-strict"}[v.state]
    text = v.headline.lower() + (" (partial)" if v.partial and not v.conforming else "")
    return f'<span class="badge {cls}" data-verdict="{esc(v.state)}">{esc(text)}</span>'


def render_matrix_html(m: Matrix) -> str:
    """The text of matrix.html."""
    heads = "".join(f'<th class="ad">{esc(c)}<br>{_verdict_badge(m.verdicts[c])}</th>'
                    for c in m.columns)
    n = len(m.columns)
    rows = []
    for area, reqs in m.view.by_area().items():
        rows.append(f'<tr class="arearow"><td colspan="{n + 2}">{esc(m.view.title(area))} '
                    f'<code>{esc(area)}</code></td></tr>')
        for r in reqs:
            cells = m.requirements[r.id]
            problem = any(s.outcome in PROBLEMS for s in cells.values())
            search = esc(" ".join([r.id, r.text, area]).lower())
            rows.append(
                f'<tr class="row" data-req-id="{esc(r.id)}" data-differs="{int(m.differs(r.id))}" '
                f'data-problem="{int(problem)}" data-search="{search}">'
                f'<td><code>{esc(r.id)}</code><div class="meta">{esc(r.text)}</div></td>'
                f'<td><span class="lvl lvl-{r.level if r.level in ("MUST", "SHOULD", "INFO") else "other"}">'
                f'{esc(r.level)}</span></td>'
                + "".join(_cell_html(cells[c].outcome, cells[c].known_failing) for c in m.columns)
                + "</tr>")
    case_rows = [f'<tr class="arearow"><td colspan="{n + 2}">Cases</td></tr>']
    for cid, per in m.cases.items():
        outs = {c: (per[c].outcome.value if c in per else None) for c in m.columns}
        problem = any(o in PROBLEMS for o in outs.values())
        differs = len(set(outs.values())) > 1
        case_rows.append(
            f'<tr class="row" data-case-id="{esc(cid)}" data-differs="{int(differs)}" '
            f'data-problem="{int(problem)}" data-search="{esc(cid.lower())}">'
            f'<td><code>{esc(cid)}</code></td><td></td>'
            + "".join(_cell_html(outs[c], c in per and per[c].known_failing) for c in m.columns)
            + "</tr>")
    summary = "".join(f"<span><code>{esc(c)}</code> {_verdict_badge(m.verdicts[c])}</span>"
                      for c in m.columns)
    body = (
        '<header class="top"><div class="wrap"><div class="headline"><h1>Presence conformance '
        f'<span class="sub">— matrix of {n} adapter{"s" if n != 1 else ""}</span></h1></div>'
        f'<div class="meta">{summary}</div></div></header>'
        '<nav class="filters"><div class="wrap">'
        '<label>Search <input type="search" id="f-text" placeholder="requirement or case…"></label>'
        '<label><input type="checkbox" id="f-diff"> only rows where adapters differ</label>'
        '<label><input type="checkbox" id="f-problems"> only rows with a problem</label>'
        '</div></nav><main class="wrap">'
        '<h2>Requirements</h2><table class="matrix"><thead><tr><th>Requirement</th><th>Level</th>'
        f'{heads}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        '<h2>Cases</h2><table class="matrix"><thead><tr><th>Case</th><th></th>'
        f'{heads}</tr></thead><tbody>{"".join(case_rows)}</tbody></table>'
        '<footer>Generated by presence-conformance report --merge</footer></main>'
    )
    return page("Presence conformance matrix", body, _MATRIX_JS)


def _md_cell(outcome: str | None, known: bool = False) -> str:
    if outcome is None:
        return "—"
    return f"{EMOJI['known-failing'] if known else EMOJI.get(outcome, '')} {outcome}"


def render_matrix_md(m: Matrix, max_bytes: int = MAX_BYTES) -> str:
    """The text of matrix.md (within `max_bytes`, whole rows only)."""
    cols = " | ".join(md_code(c) for c in m.columns)
    sep = "|---|---|" + "---|" * len(m.columns)
    head = ["# Presence conformance matrix", "",
            "| Adapter | Verdict | " + " | ".join(f"{EMOJI[o]} {o}" for o in reversed(OUTCOME_ORDER[:-1]))
            + f" | {EMOJI['known-failing']} known-failing |",
            "|---|---|" + "---:|" * len(OUTCOME_ORDER)]
    for c in m.columns:
        v = m.verdicts[c]
        counts = outcome_counts(m.runs[c])
        head.append(f"| {md_code(c)} | {v.icon} {v.headline}"
                    f"{' (partial)' if v.partial and not v.conforming else ''} | "
                    + " | ".join(str(counts.get(o, 0)) for o in reversed(OUTCOME_ORDER[:-1]))
                    + f" | {counts['known-failing']} |")
    lines = [*head, "", "## Requirements", ""]
    used = sum(len(x.encode()) + 1 for x in lines)
    dropped = 0
    budget = max_bytes - 2048

    def add(line: str) -> bool:
        nonlocal used
        size = len(line.encode()) + 1
        if used + size > budget:
            return False
        lines.append(line)
        used += size
        return True

    for area, reqs in m.view.by_area().items():
        if not add(f"### {md_text(m.view.title(area))} ({md_code(area)})\n\n"
                   f"| Requirement | Level | {cols} |\n{sep}"):
            dropped += len(reqs)
            continue
        for i, r in enumerate(reqs):
            cells = m.requirements[r.id]
            if not add(f"| {md_code(r.id)} | {md_text(r.level)} | "
                       + " | ".join(_md_cell(cells[c].outcome, cells[c].known_failing)
                                    for c in m.columns) + " |"):
                dropped += len(reqs) - i
                break
        add("")
    add("## Cases\n")
    add(f"| Case | | {cols} |\n{sep}")
    case_ids = list(m.cases)
    for i, cid in enumerate(case_ids):
        per = m.cases[cid]
        if not add(f"| {md_code(cid)} | | " + " | ".join(
                _md_cell(per[c].outcome.value if c in per else None,
                         c in per and per[c].known_failing) for c in m.columns) + " |"):
            dropped += len(case_ids) - i
            break
    text = "\n".join(lines)
    if dropped:
        text += f"\n\n> ✂️ {dropped} rows left out (size limit); see matrix.html.\n"
    return text.rstrip("\n") + "\n"


def write_matrix(runs: list[RunResult], out_dir: Path, catalogue: Any = None,
                 strict: bool = False) -> list[Path]:
    """Write `matrix.html` and `matrix.md` for `runs` into `out_dir`; return their paths."""
    m = merge(runs, catalogue=catalogue, strict=strict)
    out = Path(out_dir)
    return [write_atomic(out / "matrix.html", render_matrix_html(m)),
            write_atomic(out / "matrix.md", render_matrix_md(m))]


__all__ = ["Matrix", "merge", "merge_worker_results", "render_matrix_html", "render_matrix_md",
           "write_matrix"]
