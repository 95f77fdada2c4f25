"""`summary.md`: the run at a glance, for `$GITHUB_STEP_SUMMARY` (GitHub-flavoured Markdown).

Headline verdict, counts per outcome, one table per area with each requirement's outcome (areas
with problems open, the rest folded), then the failures: requirement, expected vs observed
(short) and the replay command. GitHub accepts at most 1 MiB per step summary, so the text is
built block by block within `MAX_BYTES`; whatever does not fit is counted in a closing note.
Every piece of implementation output is HTML-escaped and kept off Markdown syntax.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from presence_conformance.harness.reports.common import (
    NOT_COVERED,
    OUTCOME_ORDER,
    CatalogueView,
    RequirementStatus,
    Verdict,
    clean_text,
    format_time,
    outcome_counts,
    render_value,
    requirement_statuses,
    truncate,
    write_atomic,
)
from presence_conformance.harness.results import CaseResult, Outcome, RunResult

MAX_BYTES = 900 * 1024  # GitHub's job summary limit is 1 MiB; keep a margin
MAX_FAILURE_DETAILS = 50  # failures shown in full; further ones get one line each
MAX_FAILURE_LINES = 500
VALUE_LIMIT = 160

EMOJI: dict[str, str] = {
    "pass": "✅",
    "non-strict": "⚠️",
    "fail": "❌",
    "unsupported": "⏭️",
    "timeout": "⏱️",
    "error": "💥",
    NOT_COVERED: "▫️",
    "known-failing": "🔕",
}


def md_text(value: object, limit: int | None = None, note: bool = True) -> str:
    """Plain text safe inside Markdown (and a table cell): HTML-escaped, Markdown punctuation
    backslash-escaped, on one line."""
    text = truncate(" ".join(clean_text(value).split()), limit, note)
    text = html.escape(text, quote=False)
    return re.sub(r"([\\`*_\[\]|#~!])", r"\\\1", text)


def md_code(value: object, limit: int | None = None) -> str:
    """Inline code that survives any content (backticks, pipes, HTML) in a table cell."""
    text = truncate(" ".join(clean_text(value).split()), limit)
    return "<code>" + html.escape(text, quote=False).replace("|", "&#124;") + "</code>"


def md_fence(text: str, lang: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run inside it."""
    text = clean_text(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def outcome_badge(outcome: str, known: bool = False) -> str:
    label = outcome + (" (known)" if known else "")
    return f"{EMOJI['known-failing'] if known else EMOJI.get(outcome, '')} {label}"


class _Budget:
    """Collects blocks of Markdown while they fit within a byte budget."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.parts: list[str] = []

    def fits(self, text: str) -> bool:
        return self.used + len(text.encode("utf-8")) + 1 <= self.limit

    def add(self, text: str) -> bool:
        if not self.fits(text):
            return False
        self.parts.append(text)
        self.used += len(text.encode("utf-8")) + 1
        return True


def _counts_table(run: RunResult) -> str:
    counts = outcome_counts(run)
    keys = [o for o in OUTCOME_ORDER[::-1] if o != NOT_COVERED] + ["known-failing"]
    head = "| " + " | ".join(f"{EMOJI[k]} {k}" for k in keys) + " |"
    sep = "|" + "---:|" * len(keys)
    row = "| " + " | ".join(str(counts.get(k, 0)) for k in keys) + " |"
    return "\n".join([head, sep, row])


def _header(run: RunResult, v: Verdict) -> str:
    partial = " (partial run)" if v.partial and not v.conforming else ""
    lines = [f"## {v.icon} {v.headline}{partial} — {md_code(run.adapter)}", ""]
    if v.partial:
        lines += [f"> ⚠️ **Partial run**: {md_text(run.partial_reason or 'the run was interrupted')}."
                  " Cases that did not run are missing; this verdict covers only the cases below.",
                  ""]
    meta = [f"adapter {md_code(run.adapter)}"]
    if run.harness_version:
        meta.append(f"harness {md_text(run.harness_version)}")
    if run.started:
        meta.append(md_text(format_time(run.started)))
    if run.started and run.finished >= run.started:
        meta.append(f"{run.finished - run.started:.1f} s")
    meta.append("strict (SHOULDs fail the run)" if v.strict else "not strict (SHOULDs are warnings)")
    for k, val in sorted(run.adapter_options.items()):
        meta.append(f"{md_code(k)}={md_code(val, 80)}")
    lines += [" · ".join(meta), "", _counts_table(run), ""]
    if v.reasons:
        lines += ["**Why:** " + md_text("; ".join(v.reasons), 2000), ""]
    if v.known_cases:
        reqs = ", ".join(md_code(r) for r in v.known_requirements[:100])
        more = len(v.known_requirements) - 100
        lines += [f"> 🔕 **Known deviations**: {len(v.known_cases)} failing "
                  f"case{'' if len(v.known_cases) == 1 else 's'} on the known-failing list"
                  " (they do not change the exit code)"
                  + (f"; requirements not met: {reqs}" if reqs else "")
                  + (f" and {more} more" if more > 0 else "") + ".", ""]
    if v.stale:
        lines += ["### 🔕 Stale known-failing entries", "",
                  "These entries no longer match a failure; the list is stale, which fails the run:",
                  ""]
        lines += [f"- {md_text(s, 600)}" for s in v.stale[:100]]
        if len(v.stale) > 100:
            lines.append(f"- … and {len(v.stale) - 100} more")
        lines.append("")
    return "\n".join(lines)


def _area_summary(statuses: list[RequirementStatus]) -> str:
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.outcome] = counts.get(s.outcome, 0) + 1
    return " · ".join(f"{EMOJI[o]} {counts[o]} {o}" for o in OUTCOME_ORDER if counts.get(o))


def _cases_cell(status: RequirementStatus, limit: int = 3) -> str:
    ids = list(dict.fromkeys(cid for cid, _ in status.cases))
    cell = ", ".join(md_code(c, 60) for c in ids[:limit])
    if len(ids) > limit:
        cell += f" +{len(ids) - limit}"
    return cell or "—"


def _requirements(run: RunResult, view: CatalogueView, out: _Budget) -> int:
    """Add the per-area tables; return how many requirement rows did not fit."""
    statuses = requirement_statuses(run, view)
    covered = sum(1 for s in statuses.values() if s.covered)
    out.add(f"### Requirements ({covered} of {len(statuses)} covered)\n")
    if view.note:
        out.add(f"> {md_text(view.note, 500)}\n")
    dropped = 0
    for area, reqs in view.by_area().items():
        sts = [statuses[r.id] for r in reqs]
        problem = any(s.outcome not in ("pass", "unsupported", NOT_COVERED) for s in sts)
        head = (f"<details{' open' if problem else ''}><summary><b>{html.escape(area)}</b> — "
                f"{md_text(view.title(area))}: {_area_summary(sts)}</summary>\n\n"
                "| Outcome | Requirement | Level | Text | Cases |\n|---|---|---|---|---|")
        rows = []
        for r in reqs:
            s = statuses[r.id]
            rows.append(f"| {outcome_badge(s.outcome, s.known_failing)} | {md_code(r.id)} | "
                        f"{md_text(r.level)} | {md_text(r.text or '(not in the catalogue)', 140, note=False)} | "
                        f"{_cases_cell(s)} |")
        tail = "\n</details>\n"
        block = head + "\n" + "\n".join(rows) + tail
        if out.add(block):
            continue
        kept: list[str] = []  # fit as many rows as possible, then close the table properly
        for row in rows:
            if not out.fits(head + "\n" + "\n".join([*kept, row]) + tail + " " * 200):
                break
            kept.append(row)
        if kept:
            note = f"\n\n_{len(rows) - len(kept)} more rows left out (size limit)._"
            out.add(head + "\n" + "\n".join(kept) + note + tail)
        dropped += len(rows) - len(kept)
    return dropped


def _failure_block(case: CaseResult) -> str:
    known = " (known failing)" if case.known_failing else ""
    lines = [f"#### {EMOJI.get(case.outcome.value, '')} {case.outcome.value}{known} — "
             f"{md_code(case.case_id)}", ""]
    if case.error:
        lines.append(f"- **error:** {md_text(case.error, 400)}")
    for v in case.violations[:10]:
        lines.append(f"- **{md_code(v.requirement)} {md_text(v.level)}** {md_text(v.message, 300)}")
        lines.append(f"  - expected: {md_code(render_value(v.expected, VALUE_LIMIT))}")
        lines.append(f"  - observed: {md_code(render_value(v.observed, VALUE_LIMIT))}")
    if len(case.violations) > 10:
        lines.append(f"- … and {len(case.violations) - 10} more violations (see report.html)")
    if case.replay:
        lines += ["", "Replay:", "", md_fence(case.replay, "sh")]
    lines.append("")
    return "\n".join(lines)


def problem_cases(run: RunResult) -> list[CaseResult]:
    """Cases worth a look (fail, timeout, error, non-strict), worst first, known-failing last."""
    rank = {o: i for i, o in enumerate(OUTCOME_ORDER)}
    bad = [c for c in run.cases if c.outcome.is_failure or c.outcome is Outcome.NON_STRICT]
    return sorted(bad, key=lambda c: (c.known_failing, rank[c.outcome.value], c.case_id))


def render_markdown(run: RunResult, view: CatalogueView, v: Verdict,
                    max_bytes: int = MAX_BYTES) -> str:
    """The text of summary.md, at most `max_bytes` bytes of UTF-8."""
    out = _Budget(max_bytes - 2048)  # room for the closing note
    out.add(_header(run, v))
    bad = problem_cases(run)
    # Failures are the most useful part: keep at least 40% of the budget for them.
    req_budget = _Budget(int((out.limit - out.used) * (0.6 if bad else 1.0)))
    dropped_rows = _requirements(run, view, req_budget)
    for part in req_budget.parts:
        out.add(part)
    dropped_cases = 0
    if bad:
        out.add(f"### Failures ({len(bad)})\n")
        for i, case in enumerate(bad):
            if i < MAX_FAILURE_DETAILS:
                ok = out.add(_failure_block(case))
            elif i < MAX_FAILURE_DETAILS + MAX_FAILURE_LINES:
                first = case.violations[0].requirement if case.violations else (case.error or "")
                ok = out.add(f"- {EMOJI.get(case.outcome.value, '')} {md_code(case.case_id)} "
                             f"{md_text(first, 120)}")
            else:
                ok = False
            if not ok:
                dropped_cases = len(bad) - i
                break
    notes = []
    if dropped_rows:
        notes.append(f"{dropped_rows} requirement rows")
    if dropped_cases:
        notes.append(f"{dropped_cases} failures")
    text = "\n".join(out.parts)
    if notes:
        text += (f"\n\n> ✂️ Truncated to stay within GitHub's summary size limit: "
                 f"{' and '.join(notes)} left out. The full report is report.html / results.json "
                 f"in the workflow's artifact.\n")
    return text.rstrip("\n") + "\n"


def write_markdown(run: RunResult, path: Path, view: CatalogueView, v: Verdict) -> Path:
    """Write summary.md atomically."""
    return write_atomic(path, render_markdown(run, view, v))
