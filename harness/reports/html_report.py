"""`report.html`: one self-contained page (inline CSS and JS, no network) for humans.

Summary header (adapter, verdict, counts, partial banner), filters (outcome, level, text), the
failures (each a `<details>` with expected vs observed, the history as a timeline with the
violating entries highlighted, and the replay command with a copy button), every requirement of
the catalogue grouped by area (not covered ones marked), and all cases.

The URL fragment drives the page: `report.html#open=<case_id>` opens that case's details on load,
and `outcome=`, `level=`, `q=` preset the filters (`#outcome=fail&level=MUST`). Everything that comes from the run
is escaped (`esc`), and a Content-Security-Policy with the script's hash blocks any inline handler
that escaping might have missed.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

from presence_conformance.harness.reports.assets import CSS, JS_REPORT, csp
from presence_conformance.harness.reports.common import (
    NOT_COVERED,
    OUTCOME_ORDER,
    CatalogueView,
    Requirement,
    RequirementStatus,
    Verdict,
    clean_text,
    format_time,
    history_windows,
    outcome_counts,
    render_value,
    requirement_statuses,
    requirements_of,
    truncate,
    violating_indexes,
    write_atomic,
)
from presence_conformance.harness.results import CaseResult, Outcome, RunResult, Violation

PROBLEMS = ("fail", "non-strict", "timeout", "error")
VALUE_LIMIT = 20_000  # characters of one expected/observed value
TIMELINE_VALUE_LIMIT = 400


def esc(value: object) -> str:
    """Text for HTML content and attribute values (quotes included)."""
    return html.escape(clean_text(value), quote=True)


def slug(value: str) -> str:
    """A CSS-class-safe form of an outcome or level."""
    return "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in value.lower())


def level_class(level: str) -> str:
    return level if level in ("MUST", "SHOULD", "INFO") else "other"


def open_href(case_id: str) -> str:
    """The link that opens a case's details (`#open=<case_id>`)."""
    return "#open=" + quote(case_id, safe="")


def badge(outcome: str, known: bool = False) -> str:
    out = f'<span class="badge o-{slug(outcome)}">{esc(outcome)}</span>'
    if known:
        out += ' <span class="badge known" title="listed in the known-failing list">known failing</span>'
    return out


def page(title: str, body: str, js: str) -> str:
    """A complete HTML document around `body`."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{html.escape(csp(js), quote=False)}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"referrer\" content=\"no-referrer\">\n"
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
        f"<script>{js}</script>\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------


def _header(run: RunResult, v: Verdict, n_req: int, n_covered: int) -> str:
    cls, mark = {"conforming": ("ok", "✔"), "known-deviations": ("known", "◐"),
                 "not-conforming": ("bad", "✖"), "incomplete": ("warn", "⚠")}[v.state]
    meta = [f"<span>adapter <code>{esc(run.adapter)}</code></span>"]
    if run.harness_version:
        meta.append(f"<span>harness {esc(run.harness_version)}</span>")
    if run.started:
        meta.append(f"<span>{esc(format_time(run.started))}</span>")
    if run.started and run.finished >= run.started:
        meta.append(f"<span>{run.finished - run.started:.1f} s</span>")
    meta.append(f"<span>{len(run.cases)} cases</span>")
    meta.append(f"<span>{n_covered} of {n_req} requirements covered</span>")
    meta.append("<span>strict: SHOULD violations fail the run</span>" if v.strict
                else "<span>not strict: SHOULD violations are warnings</span>")
    for k, val in sorted(run.adapter_options.items()):
        meta.append(f"<span><code>{esc(k)}={esc(truncate(clean_text(val), 80))}</code></span>")
    counts = outcome_counts(run)
    chips = []
    for o in [*reversed(OUTCOME_ORDER[:-1])]:
        n = counts.get(o, 0)
        chips.append(f'<button type="button" class="chip{" zero" if not n else ""}" data-outcome="{o}" '
                     f'title="show only {o}"><span class="dot o-{slug(o)}"></span>{esc(o)} '
                     f'<b>{n}</b></button>')
    if counts.get("known-failing"):
        chips.append(f'<button type="button" class="chip" data-outcome="known" title="show only known '
                     f'failing"><span class="dot o-known"></span>known failing '
                     f'<b>{counts["known-failing"]}</b></button>')
    partial = " (partial run)" if v.partial and not v.conforming else ""
    parts = [
        '<header class="top"><div class="wrap">',
        f'<div class="headline"><span class="verdict {cls}" id="verdict">{mark} {esc(v.headline)}'
        f'{esc(partial)}</span><h1>Presence conformance <span class="sub">— {esc(run.adapter)}</span>'
        '</h1></div>',
        f'<div class="meta">{"".join(meta)}</div>',
        f'<div class="chips" id="counts">{"".join(chips)}</div>',
    ]
    if v.reasons and v.state != "conforming":
        parts.append(f'<div class="meta">Why: {esc("; ".join(v.reasons))}</div>')
    if v.partial:
        parts.append(f'<div class="banner partial" id="partial-banner"><b>Partial run.</b> '
                     f'{esc(run.partial_reason or "The run was interrupted.")} Cases that did not run '
                     'are missing; the verdict covers only the cases below.</div>')
    if v.stale:
        items = "".join(f"<li>{esc(s)}</li>" for s in v.stale)
        parts.append(f'<div class="banner stale" id="stale"><b>Stale known-failing list</b> '
                     f'(fails the run): these entries no longer match a failure.<ul>{items}</ul></div>')
    parts.append("</div></header>")
    return "\n".join(parts)


def _filters() -> str:
    outcomes = "".join(f'<option value="{o}">{esc(o)}</option>' for o in OUTCOME_ORDER)
    return (
        '<nav class="filters" aria-label="filters"><div class="wrap">'
        '<label>Outcome <select id="f-outcome"><option value="all">all</option>'
        f'<option value="problems">problems (fail, non-strict, timeout, error)</option>{outcomes}'
        '<option value="known">known failing</option></select></label>'
        '<label>Level <select id="f-level"><option value="all">all</option>'
        '<option value="MUST">MUST</option><option value="SHOULD">SHOULD</option>'
        '<option value="INFO">INFO</option></select></label>'
        '<label>Search <input type="search" id="f-text" placeholder="requirement, case, text…" '
        'autocomplete="off"></label><span id="shown"></span></div></nav>'
    )


def _pre(value: object, cls: str) -> str:
    return f'<pre class="{cls}">{esc(render_value(value, VALUE_LIMIT, pretty=True))}</pre>'


def _violation(v: Violation, req: Requirement | None) -> str:
    lvl = str(v.level).upper()
    where = []
    if v.step is not None:
        where.append(f"step {v.step}")
    if v.history_index is not None:
        where.append(f"history #{v.history_index}")
    text = f'<div class="reqtext">{esc(truncate(req.text, 300))}</div>' if req and req.text else ""
    return (
        f'<div class="violation {level_class(lvl)}"><div class="vhead">'
        f'<span class="lvl lvl-{level_class(lvl)}">{esc(lvl)}</span><code>{esc(v.requirement)}</code>'
        f'<span class="tag">check: {esc(v.check)}</span>'
        + "".join(f'<span class="tag">{esc(w)}</span>' for w in where)
        + f'</div>{text}<div class="msg">{esc(v.message)}</div>'
        + (f'<div class="eo"><div><div class="lab">expected</div>{_pre(v.expected, "exp")}</div>'
           f'<div><div class="lab">observed</div>{_pre(v.observed, "obs")}</div></div>'
           if lvl != "INFO" or v.expected is not None or v.observed is not None else "")
        + "</div>"
    )


def _timeline(case: CaseResult, n: int) -> str:
    rows = history_windows(case, before=10, after=6, max_rows=300)
    if not rows:
        return ""
    hits = violating_indexes(case)
    trs = []
    for e in rows:
        if isinstance(e, int):
            trs.append(f'<tr class="gap"><td colspan="7">… {e} more entr{"y" if e == 1 else "ies"} …'
                       '</td></tr>')
            continue
        idx = e.get("index", "")
        typ = str(e.get("type", ""))
        t = e.get("time")
        ms = f"{t * 1000:.1f}" if isinstance(t, (int, float)) else ""
        cls = f"t-{slug(typ)}" + (" hit" if idx in hits else "")
        row_id = f' id="h-{n}-{esc(idx)}"' if idx in hits else ""
        trs.append(
            f'<tr class="{cls}"{row_id}>'
            f'<td class="num">{esc(idx)}</td><td class="num">{esc(ms)}</td>'
            f'<td>{esc(e.get("process", ""))}</td>'
            f'<td class="ty"><span class="pill t-{slug(typ)}">{esc(typ)}</span></td>'
            f'<td><code>{esc(e.get("f", ""))}</code></td>'
            f'<td class="val"><code>{esc(render_value(e.get("value"), TIMELINE_VALUE_LIMIT))}</code></td>'
            f'<td class="num">{esc("" if e.get("step") is None else e.get("step"))}</td></tr>'
        )
    shown = sum(1 for e in rows if not isinstance(e, int))
    note = (f" — {shown} of {len(case.history)} entries around the violation; the full history is "
            "in results.json") if shown < len(case.history) else ""
    return (
        f'<div class="sect">History{esc(note)}</div>'
        '<table class="timeline"><thead><tr><th>#</th><th>ms</th><th>process</th><th>type</th>'
        f'<th>f</th><th>value</th><th>step</th></tr></thead><tbody>{"".join(trs)}</tbody></table>'
    )


def _case_levels(case: CaseResult, view: CatalogueView) -> str:
    by_id = view.by_id
    levels = {str(v.level).upper() for v in [*case.violations, *case.infos]}
    levels |= {by_id[r].level for r in case.requirements if r in by_id}
    return " ".join(sorted(levels))


def _case_search(case: CaseResult) -> str:
    bits = [case.case_id, *requirements_of(case), case.error or "",
            *(v.message for v in case.violations)]
    return esc(" ".join(clean_text(b) for b in bits).lower())


def _failure(n: int, case: CaseResult, view: CatalogueView) -> str:
    by_id = view.by_id
    first = (f"[{case.violations[0].requirement}] {case.violations[0].message}"
             if case.violations else case.error or "")
    dur = f"{case.duration:.2f} s" if case.duration else ""
    body = []
    if case.error:
        body.append(f'<div class="errbox"><div class="sect">{esc(case.outcome.value)}</div>'
                    f'<pre class="obs">{esc(case.error)}</pre></div>')
    for v in case.violations:
        body.append(_violation(v, by_id.get(v.requirement)))
    for v in case.infos:
        body.append(_violation(v, by_id.get(v.requirement)))
    info = []
    if case.scenario_file:
        info.append(f'<span class="tag">scenario file: {esc(case.scenario_file)}</span>')
    info += [f'<span class="tag">{esc(r)}</span>' for r in case.requirements]
    if info:
        body.append(f'<div class="sect">Case</div><div>{"".join(info)}</div>')
    body.append(_timeline(case, n))
    if case.replay:
        body.append('<div class="sect">Replay</div><div class="replay">'
                    f'<code>{esc(case.replay)}</code><button type="button" class="copy" '
                    'title="copy the command">Copy</button></div>')
    return (
        f'<details class="case filterable" id="case-{n}" data-case-id="{esc(case.case_id)}" '
        f'data-outcome="{esc(case.outcome.value)}" data-known="{int(case.known_failing)}" '
        f'data-levels="{esc(_case_levels(case, view))}" data-search="{_case_search(case)}">'
        f'<summary>{badge(case.outcome.value, case.known_failing)}'
        f'<code class="cid">{esc(case.case_id)}</code>'
        f'<span class="first">{esc(truncate(" ".join(clean_text(first).split()), 240))}</span>'
        f'<span class="dur">{esc(dur)}</span></summary>'
        f'<div class="body">{"".join(body)}</div></details>'
    )


def _spec_points(req: Requirement) -> str:
    tags = [f'<span class="tag" title="Ably spec point">{esc(p)}</span>' for p in req.ably]
    if req.seed:
        tags.append(f'<span class="tag" title="Presence API section">seed: {esc(req.seed)}</span>')
    if req.codes:
        tags.append(f'<span class="tag" title="error codes">codes: '
                    f'{esc(", ".join(str(c) for c in req.codes))}</span>')
    if not req.in_catalogue:
        tags.append('<span class="tag" title="reported by a check but missing from the catalogue">'
                    'not in catalogue</span>')
    return f'<div>{"".join(tags)}</div>' if tags else ""


def _case_links(status: RequirementStatus, problem_ids: set[str], limit: int = 12) -> str:
    links: list[str] = []
    seen: set[str] = set()
    for cid, o in status.cases:
        if cid in seen:
            continue
        seen.add(cid)
        if len(links) >= limit:
            links.append(f"<span class=\"tag\">+{len({c for c, _ in status.cases}) - limit} more</span>")
            break
        href = open_href(cid) if cid in problem_ids else "#c-" + quote(cid, safe="")
        links.append(f'<a class="l-{slug(o.value)}" href="{esc(href)}" title="{esc(o.value)} in this '
                     f'case">{esc(cid)}</a>')
    return f'<div class="caselinks">{"".join(links)}</div>' if links else "—"


def _requirements(run: RunResult, view: CatalogueView, statuses: dict[str, RequirementStatus],
                  problem_ids: set[str]) -> str:
    out = ['<section id="requirements"><h2>Requirements by area</h2>']
    if view.note:
        out.append(f'<div class="banner note">{esc(view.note)}</div>')
    for area, reqs in view.by_area().items():
        counts: dict[str, int] = {}
        for r in reqs:
            counts[statuses[r.id].outcome] = counts.get(statuses[r.id].outcome, 0) + 1
        summary = "".join(f'<span><i class="dot o-{slug(o)}"></i>{counts[o]} {esc(o)}</span>'
                          for o in OUTCOME_ORDER if counts.get(o))
        rows = []
        for r in reqs:
            s = statuses[r.id]
            search = esc(" ".join([r.id, r.text, r.area, *r.ably, r.seed,
                                   *(c for c, _ in s.cases)]).lower())
            rows.append(
                f'<tr class="req filterable o-row-{slug(s.outcome)}" data-req-id="{esc(r.id)}" '
                f'data-outcome="{esc(s.outcome)}" data-known="{int(s.known_failing)}" '
                f'data-levels="{esc(r.level)}" data-search="{search}">'
                f'<td>{badge(s.outcome, s.known_failing)}</td>'
                f'<td><code>{esc(r.id)}</code>{_spec_points(r)}</td>'
                f'<td><span class="lvl lvl-{level_class(r.level)}">{esc(r.level)}</span></td>'
                f'<td>{esc(r.text) if r.text else "<i>(not in the catalogue)</i>"}</td>'
                f'<td>{_case_links(s, problem_ids)}</td></tr>'
            )
        out.append(
            f'<section class="area group" data-area="{esc(area)}" id="area-{esc(slug(area))}">'
            f'<div class="area-head"><h3>{esc(view.title(area))} <span class="sub">'
            f'<code>{esc(area)}</code></span></h3><span class="counts">{summary}</span></div>'
            '<table class="reqs"><thead><tr><th>Outcome</th><th>Requirement</th><th>Level</th>'
            f'<th>Text</th><th>Cases</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>'
        )
    out.append('<p class="empty none-shown" hidden>No requirement matches the filters.</p>')
    out.append("</section>")
    return "\n".join(out)


def _all_cases(run: RunResult, view: CatalogueView, problem_ids: set[str]) -> str:
    rows = []
    for c in sorted(run.cases, key=lambda c: c.case_id):
        cid = esc(c.case_id)
        name = (f'<a href="{esc(open_href(c.case_id))}"><code>{cid}</code></a>'
                if c.case_id in problem_ids else f"<code>{cid}</code>")
        note = ""
        if c.outcome is Outcome.UNSUPPORTED and c.error:
            note = esc(truncate(c.error, 200))
        elif c.infos:
            note = esc("; ".join(truncate(v.message, 120) for v in c.infos[:3]))
        reqs = "".join(f'<span class="tag">{esc(r)}</span>' for r in c.requirements)
        rows.append(
            f'<tr class="caserow filterable" id="c-{esc(quote(c.case_id, safe=""))}" '
            f'data-outcome="{esc(c.outcome.value)}" data-known="{int(c.known_failing)}" '
            f'data-levels="{esc(_case_levels(c, view))}" data-search="{_case_search(c)}">'
            f'<td>{badge(c.outcome.value, c.known_failing)}</td><td>{name}</td>'
            f'<td>{esc(c.kind)}</td><td class="num">{c.duration:.2f} s</td><td>{reqs}</td>'
            f'<td>{note}</td></tr>'
        )
    return (
        f'<section id="cases"><h2>All cases ({len(run.cases)})</h2>'
        '<table class="cases"><thead><tr><th>Outcome</th><th>Case</th><th>Kind</th><th>Time</th>'
        f'<th>Requirements</th><th>Note</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
        '</section>'
    )


def _problem_cases(run: RunResult) -> list[CaseResult]:
    rank = {o: i for i, o in enumerate(OUTCOME_ORDER)}
    bad = [c for c in run.cases if c.outcome.value in PROBLEMS]
    return sorted(bad, key=lambda c: (c.known_failing, rank[c.outcome.value], c.case_id))


def _failures(bad: list[CaseResult], view: CatalogueView) -> str:
    if not bad:
        return ('<section id="failures"><h2>Failures and warnings (0)</h2>'
                '<p class="empty">No failures: every case passed or is unsupported.</p></section>')
    items = "".join(_failure(n, c, view) for n, c in enumerate(bad, start=1))
    return (f'<section id="failures"><h2>Failures and warnings ({len(bad)})</h2>'
            f'{items}<p class="empty none-shown" hidden>No failure matches the filters.</p></section>')


def render_html(run: RunResult, view: CatalogueView, v: Verdict) -> str:
    """The text of report.html."""
    statuses = requirement_statuses(run, view)
    covered = sum(1 for s in statuses.values() if s.outcome != NOT_COVERED)
    bad = _problem_cases(run)
    problem_ids = {c.case_id for c in bad}
    body = "\n".join([
        _header(run, v, len(statuses), covered),
        _filters(),
        '<main class="wrap">',
        _failures(bad, view),
        _requirements(run, view, statuses, problem_ids),
        _all_cases(run, view, problem_ids),
        f'<footer>Generated by presence-conformance {esc(run.harness_version)} · '
        'results.json holds the full data (schema spec/schemas/results.json) · '
        'link to a failure with <code>report.html#open=&lt;case_id&gt;</code>, to a view with '
        '<code>#outcome=fail&amp;level=MUST&amp;q=history</code></footer>',
        "</main>",
    ])
    return page(f"{v.headline} — presence conformance: {run.adapter}", body, JS_REPORT)


def write_html(run: RunResult, path: Path, view: CatalogueView, v: Verdict) -> Path:
    """Write report.html atomically."""
    return write_atomic(path, render_html(run, view, v))
