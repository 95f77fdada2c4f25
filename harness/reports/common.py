"""Shared pieces of the report writers: the catalogue view, requirement outcomes, the verdict,
safe text and value rendering, and atomic file writes.

Every writer reads the same `RunResult` and derives the same things from it, so they agree:
the area of a case, the outcome of each requirement, the verdict and the exit code.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from presence_conformance.harness.reports.exit_codes import exit_code
from presence_conformance.harness.record.records import jsonable as record_jsonable
from presence_conformance.harness.results import SEVERITY, CaseResult, Outcome, RunResult, worst
from presence_conformance.spec import CatalogueError, load_requirements

NOT_COVERED = "not covered"

OUTCOME_LABELS: dict[str, str] = {
    "pass": "pass",
    "non-strict": "non-strict",
    "fail": "fail",
    "unsupported": "unsupported",
    "timeout": "timeout",
    "error": "error",
    NOT_COVERED: "not covered",
}

# Order in which outcome groups are listed (worst first, then the harmless ones).
OUTCOME_ORDER: list[str] = [o.value for o in SEVERITY] + [NOT_COVERED]


# --------------------------------------------------------------------------------------------
# Text and values
# --------------------------------------------------------------------------------------------

# Characters that XML 1.0 forbids (even as references), lone surrogates (not encodable as UTF-8)
# and the other C0/C1 controls that would garble a terminal or a report.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]"
)


def clean_text(value: Any) -> str:
    """`value` as text that is valid in XML 1.0, HTML and UTF-8.

    Control characters, lone surrogates and non-characters become visible escapes (`\\x00`,
    `\\ud800`), so nothing an implementation sends can corrupt a report or hide in it.
    """
    text = value if isinstance(value, str) else str(value)

    def esc(m: re.Match[str]) -> str:
        c = ord(m.group())
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"

    return _UNSAFE.sub(esc, text)


def jsonable(value: Any) -> Any:
    """`value` made JSON-ready by the record's conversion, unbounded: a report shows what the
    record kept (already bounded there), whole."""
    return record_jsonable(value, bound=False)


def _binary_label(data: bytes) -> str:
    head = " ".join(f"{b:02x}" for b in data[:16])
    more = " …" if len(data) > 16 else ""
    return f"<binary {len(data)} B: {head}{more}>"


def _display(value: Any, labels: list[str], token: str) -> Any:
    """Replace binary data (raw or `{"$binary": …}`) by placeholder strings, recursively; the
    readable labels are appended to `labels`."""
    data: bytes | None = None
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, dict) and set(value) == {"$binary"} and isinstance(value["$binary"], str):
        try:
            data = base64.b64decode(value["$binary"], validate=True)
        except ValueError:
            data = None
    if data is not None:
        labels.append(_binary_label(data))
        return f"{token}{len(labels) - 1}{token}"
    if isinstance(value, dict):
        return {str(k): _display(v, labels, token) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_display(v, labels, token) for v in value]
    return value


def render_value(value: Any, limit: int | None = 300, pretty: bool = False) -> str:
    """A compact (or indented) JSON-like rendering of `value` for humans, at most `limit` chars.

    Strings render as JSON strings (quoted), so `"1"` and `1` stay distinguishable; binary data
    (raw or `{"$binary": …}`) renders unquoted as `<binary N B: hex…>`.
    """
    labels: list[str] = []
    token = "@@bin" + secrets.token_hex(4) + "@@"
    shown = _display(jsonable(value), labels, token)
    try:
        text = json.dumps(shown, ensure_ascii=False, indent=2 if pretty else None,
                          separators=None if pretty else (", ", ": "))
    except (TypeError, ValueError):
        text = repr(shown)
    if labels:
        text = re.sub(f'"{token}(\\d+){token}"', lambda m: labels[int(m.group(1))], text)
    return truncate(clean_text(text), limit)


def truncate(text: str, limit: int | None, note: bool = True) -> str:
    """`text` cut to `limit` characters, with a note on how much was left out (or just `…`)."""
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}… (+{len(text) - limit} chars)" if note else text[:limit].rstrip() + "…"


# --------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """One requirement as the reports show it (a copy of the catalogue's entry)."""

    id: str
    area: str
    level: str  # MUST | SHOULD | INFO | "?" when not in the catalogue
    text: str = ""
    seed: str = ""
    ably: tuple[str, ...] = ()
    codes: tuple[Any, ...] = ()
    in_catalogue: bool = True


def area_of_requirement(req_id: str) -> str:
    """`history.limit-default-100` -> `history`."""
    return req_id.split(".", 1)[0] if "." in req_id else "other"


def area_of_case(case: CaseResult) -> str:
    """The area a case is reported under: its case_id prefix, `generated` for generated cases."""
    if case.kind == "generated" or case.case_id.startswith("generated/"):
        return "generated"
    return case.case_id.split("/", 1)[0] if "/" in case.case_id else "other"


@dataclass
class CatalogueView:
    """The requirements the reports list, grouped by area, in catalogue order.

    Built from the project's catalogue (`spec.load_requirements()`) or any object with the same
    shape, plus every requirement ID a run mentions that the catalogue lacks (`in_catalogue`
    False), so nothing a check reported is ever dropped from a report.
    """

    requirements: list[Requirement] = field(default_factory=list)
    areas: dict[str, str] = field(default_factory=dict)  # area -> title
    note: str | None = None  # why the catalogue could not be loaded, if it could not

    @property
    def by_id(self) -> dict[str, Requirement]:
        """Requirements by ID (rebuilt only when the list changed length)."""
        cached = self.__dict__.get("_by_id")
        if cached is None or len(cached) != len(self.requirements):
            cached = self.__dict__["_by_id"] = {r.id: r for r in self.requirements}
        return cached

    def by_area(self) -> dict[str, list[Requirement]]:
        out: dict[str, list[Requirement]] = {a: [] for a in self.areas}
        for r in self.requirements:
            out.setdefault(r.area, []).append(r)
        return {a: rs for a, rs in out.items() if rs}

    def title(self, area: str) -> str:
        return self.areas.get(area) or area


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        return (value,)


def _level_name(level: Any) -> str:
    name = getattr(level, "value", level)
    return str(name).upper() if name else "?"


def load_catalogue(catalogue: Any = None, runs: Iterable[RunResult] = ()) -> CatalogueView:
    """A `CatalogueView` of `catalogue` (default: `spec.load_requirements()`), completed with the
    requirement IDs that `runs` mention."""
    note = None
    if catalogue is None:
        try:
            catalogue = load_requirements()
        except CatalogueError as exc:  # the report must still be written from the results alone
            note = f"requirement catalogue unavailable ({type(exc).__name__}: {exc})"
            catalogue = None
    view = CatalogueView(note=note)
    if catalogue is not None:
        for area, title in dict(getattr(catalogue, "areas", {}) or {}).items():
            view.areas[str(area)] = str(title)
        for r in getattr(catalogue, "requirements", []) or []:
            rid = str(r.id)
            view.requirements.append(Requirement(
                id=rid,
                area=str(getattr(r, "area", None) or area_of_requirement(rid)),
                level=_level_name(getattr(r, "level", None)),
                text=str(getattr(r, "text", "") or ""),
                seed=str(getattr(r, "seed", "") or ""),
                ably=tuple(str(p) for p in _as_tuple(getattr(r, "ably", None))),
                codes=_as_tuple(getattr(r, "codes", None)),
            ))
    known = {r.id for r in view.requirements}
    extra: dict[str, str] = {}
    for run in runs:
        for case in run.cases:
            for rid in case.requirements:
                extra.setdefault(rid, "?")
            for v in [*case.violations, *case.infos]:
                if extra.get(v.requirement, "?") == "?":
                    extra[v.requirement] = _level_name(v.level)
    for rid in sorted(set(extra) - known):
        view.requirements.append(Requirement(id=rid, area=area_of_requirement(rid),
                                             level=extra[rid], in_catalogue=False))
    for r in view.requirements:
        view.areas.setdefault(r.area, r.area)
    return view


# --------------------------------------------------------------------------------------------
# Requirement outcomes
# --------------------------------------------------------------------------------------------


@dataclass
class RequirementStatus:
    """How one requirement fared in one run, derived from every case that checks it
    (`requirement_outcome`: any failure -> that failure, else any pass -> pass, else
    unsupported)."""

    outcome: str  # an Outcome value, or NOT_COVERED
    cases: list[tuple[str, Outcome]] = field(default_factory=list)  # (case_id, per-case outcome)
    known_failing: bool = False  # every failing case behind `outcome` is known-failing

    @property
    def covered(self) -> bool:
        return self.outcome != NOT_COVERED


def case_outcome_for(case: CaseResult, req_id: str) -> Outcome:
    """The outcome of `case` as far as requirement `req_id` is concerned.

    A failing case fails only the requirements it has a violation for (MUST -> fail, SHOULD ->
    non-strict); the other requirements it checks passed. Timeout, error and unsupported apply
    to every requirement of the case.
    """
    if case.outcome not in (Outcome.FAIL, Outcome.NON_STRICT):
        return case.outcome
    levels = {_level_name(v.level) for v in case.violations if v.requirement == req_id}
    if not case.violations:  # a failure without violations: blame everything it checks
        return case.outcome
    if "MUST" in levels:
        return Outcome.FAIL
    if "SHOULD" in levels:
        return Outcome.NON_STRICT
    return Outcome.PASS


def requirements_of(case: CaseResult) -> list[str]:
    """The requirements a case checks: its tags and every requirement it reported a violation of."""
    seen = dict.fromkeys(case.requirements)
    for v in case.violations:
        seen.setdefault(v.requirement)
    return list(seen)


def requirement_outcome(outcomes: list[Outcome]) -> Outcome:
    """A requirement's outcome from the outcomes of all its cases: the worst problem (error,
    timeout, fail, non-strict) if any case has one; else `pass` if any case passed; else
    `unsupported`. One case the adapter cannot run does not hide the cases that passed."""
    problems = [o for o in outcomes if o.is_failure or o is Outcome.NON_STRICT]
    if problems:
        return worst(problems)
    if Outcome.PASS in outcomes:
        return Outcome.PASS
    return Outcome.UNSUPPORTED if outcomes else Outcome.PASS


def requirement_statuses(run: RunResult, view: CatalogueView) -> dict[str, RequirementStatus]:
    """Every requirement of `view` with its status in `run` (NOT_COVERED when no case checks it)."""
    per: dict[str, list[tuple[CaseResult, Outcome]]] = {}
    for case in run.cases:
        for rid in requirements_of(case):
            per.setdefault(rid, []).append((case, case_outcome_for(case, rid)))
    out: dict[str, RequirementStatus] = {}
    for req in view.requirements:
        entries = per.get(req.id, [])
        if not entries:
            out[req.id] = RequirementStatus(NOT_COVERED)
            continue
        w = requirement_outcome([o for _, o in entries])
        bad = [c for c, o in entries if o == w]
        out[req.id] = RequirementStatus(
            w.value, [(c.case_id, o) for c, o in entries],
            known_failing=(w.is_failure or w is Outcome.NON_STRICT) and all(c.known_failing for c in bad),
        )
    return out


# --------------------------------------------------------------------------------------------
# Verdict
# --------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """The run's verdict, its exit code and the reasons behind it.

    `known_cases` are the cases that fail but are on the known-failing list, and
    `known_requirements` the requirements they violate: such a run exits 0, yet its headline
    says CONFORMING EXCEPT KNOWN DEVIATIONS, never plain CONFORMING.
    """

    conforming: bool
    partial: bool
    strict: bool
    exit_code: int
    reasons: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    known_cases: list[str] = field(default_factory=list)
    known_requirements: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        """`conforming`, `known-deviations` (conforming only thanks to the known-failing list),
        `not-conforming`, or `incomplete` (partial, no failure found so far)."""
        if not self.conforming:
            return "not-conforming"
        if self.partial:
            return "incomplete"
        return "known-deviations" if self.known_cases else "conforming"

    @property
    def headline(self) -> str:
        """CONFORMING, CONFORMING EXCEPT KNOWN DEVIATIONS (n requirements), NOT CONFORMING, or
        INCOMPLETE (a partial run that found no failure: it exits HARNESS_FAILURE, so it must
        not read as a pass)."""
        if self.state == "known-deviations":
            return f"CONFORMING EXCEPT KNOWN DEVIATIONS ({self.deviation_count})"
        return {"conforming": "CONFORMING", "not-conforming": "NOT CONFORMING",
                "incomplete": "INCOMPLETE"}[self.state]

    @property
    def deviation_count(self) -> str:
        """`3 requirements` (or `2 cases` when the known failures name no requirement)."""
        n, unit = len(self.known_requirements), "requirement"
        if not n:
            n, unit = len(self.known_cases), "case"
        return f"{n} {unit}{'' if n == 1 else 's'}"

    @property
    def icon(self) -> str:
        return {"conforming": "✅", "known-deviations": "🔕", "not-conforming": "❌",
                "incomplete": "⚠️"}[self.state]


def failing_cases(run: RunResult, strict: bool) -> list[CaseResult]:
    """Cases that fail the run: failures, and non-strict cases under `strict`; known-failing
    cases excepted."""
    return [c for c in run.cases if not c.known_failing and _fails(c, strict)]


def known_deviations(run: RunResult, strict: bool) -> list[CaseResult]:
    """Cases that would fail the run but are on the known-failing list."""
    return [c for c in run.cases if c.known_failing and _fails(c, strict)]


def _fails(case: CaseResult, strict: bool) -> bool:
    return case.outcome.is_failure or (strict and case.outcome is Outcome.NON_STRICT)


def deviating_requirements(cases: Iterable[CaseResult], strict: bool) -> list[str]:
    """The requirements `cases` fail (`case_outcome_for`), sorted."""
    out: set[str] = set()
    for case in cases:
        for rid in requirements_of(case):
            if _fails_requirement(case_outcome_for(case, rid), strict):
                out.add(rid)
    return sorted(out)


def _fails_requirement(outcome: Outcome, strict: bool) -> bool:
    return outcome.is_failure or (strict and outcome is Outcome.NON_STRICT)


def verdict(run: RunResult, strict: bool = False, stale_errors: list[str] | None = None) -> Verdict:
    """Judge `run`: conforming when no case fails it (see `failing_cases`) and the known-failing
    list is not stale. A partial run is marked, and never exits 0. Known-failing cases that
    fail are counted (`Verdict.known_cases`), so the headline can say so."""
    stale = list(stale_errors or [])
    reasons: list[str] = []
    bad = failing_cases(run, strict)
    if bad:
        by: dict[str, int] = {}
        for c in bad:
            by[c.outcome.value] = by.get(c.outcome.value, 0) + 1
        reasons.append("failing cases: " + ", ".join(f"{n} {o}" for o, n in by.items()))
    known = known_deviations(run, strict)
    known_reqs = deviating_requirements(known, strict)
    if known:
        reasons.append(
            f"{len(known)} known-failing case{'' if len(known) == 1 else 's'}"
            + (f" (requirements: {', '.join(known_reqs)})" if known_reqs else "")
        )
    if stale:
        reasons.append(f"{len(stale)} stale known-failing entr{'y' if len(stale) == 1 else 'ies'}")
    if run.partial:
        reasons.append("partial run" + (f": {run.partial_reason}" if run.partial_reason else ""))
    return Verdict(conforming=not bad and not stale, partial=run.partial, strict=strict,
                   exit_code=exit_code(run, strict, stale), reasons=reasons, stale=stale,
                   known_cases=[c.case_id for c in known], known_requirements=known_reqs)


def outcome_counts(run: RunResult) -> dict[str, int]:
    """Cases per outcome, plus `known-failing` (how many failing cases were listed)."""
    counts = run.counts()
    counts["known-failing"] = sum(1 for c in run.cases if c.known_failing)
    return counts


def format_time(epoch: float) -> str:
    """An epoch timestamp as `2026-11-28 15:40:02 UTC` ('' when unset)."""
    if not epoch or epoch < 1e8:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def iso_time(epoch: float) -> str:
    """An epoch timestamp in ISO 8601 (JUnit's `timestamp`), '' when unset."""
    if not epoch or epoch < 1e8:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


def violating_indexes(case: CaseResult) -> set[int]:
    """History indexes that violations point at."""
    return {v.history_index for v in case.violations if v.history_index is not None}


def history_windows(case: CaseResult, before: int = 8, after: int = 4,
                    max_rows: int = 200) -> list[dict | int]:
    """The history entries around every violation; an int stands for that many omitted entries.

    Without violation positions, the last `before + after` entries are shown.
    """
    entries = case.history
    if not entries:
        return []
    hits = sorted(i for i in violating_indexes(case) if 0 <= i < len(entries))
    if not hits:
        keep = set(range(max(0, len(entries) - (before + after)), len(entries)))
    else:
        keep = set()
        for h in hits:
            keep.update(range(max(0, h - before), min(len(entries), h + after + 1)))
    rows: list[dict | int] = []
    prev = -1
    for i in sorted(keep)[:max_rows]:
        if i != prev + 1:
            rows.append(i - prev - 1)
        rows.append(entries[i])
        prev = i
    if prev < len(entries) - 1:
        rows.append(len(entries) - 1 - prev)
    return rows


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and a rename, so a
    reader (or an interrupted run) never sees a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def unique_labels(names: Iterable[str]) -> list[str]:
    """Column labels: names, with ` (2)`, ` (3)` added to repeated ones."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def chunks_within(parts: Iterable[str], budget: int) -> Iterator[str]:
    """Yield `parts` while their UTF-8 size stays within `budget` bytes."""
    used = 0
    for p in parts:
        size = len(p.encode("utf-8"))
        if used + size > budget:
            return
        used += size
        yield p
