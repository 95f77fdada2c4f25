"""`junit.xml`: one `<testsuite>` per area, one `<testcase>` per case (h2spec shape).

* `fail` (and `non-strict` under strict) -> `<failure message="[<requirement>] <message>">` whose
  text lists every violation (requirement, level, expected, observed), a history excerpt and the
  replay command;
* `timeout` / `error` -> `<error type="timeout|error">`;
* `unsupported` -> `<skipped>`; a known-failing case -> `<skipped message="known failing: …">`;
* `non-strict` without strict passes, with the SHOULD violations in `<system-out>`.

Every `<testsuite>` carries the run's verdict in its `<properties>`: `verdict` (the headline, e.g.
`CONFORMING EXCEPT KNOWN DEVIATIONS (2 requirements)`), `verdict.state`, `verdict.exit_code`,
`known_failing.cases` and `known_failing.requirements`.

A stale known-failing list and a partial run add failing test cases (suites `presence.expectations`
and `presence.harness`), so a JUnit viewer shows why the run failed. All text goes through
`clean_text`: the XML is valid whatever the implementation under test sent.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from presence_conformance.harness.reports.common import (
    Verdict,
    area_of_case,
    clean_text,
    iso_time,
    render_value,
    truncate,
    verdict,
    violating_indexes,
    write_atomic,
)
from presence_conformance.harness.results import CaseResult, Outcome, RunResult, Violation

MESSAGE_LIMIT = 500  # characters of a failure's `message` attribute
VALUE_LIMIT = 2000  # characters of one expected / observed value


def _violation_text(n: int, v: Violation) -> str:
    where = []
    if v.step is not None:
        where.append(f"step {v.step}")
    if v.history_index is not None:
        where.append(f"history #{v.history_index}")
    lines = [f"Violation {n}: [{v.requirement}] {v.level} (check: {v.check})"
             + (f" at {', '.join(where)}" if where else ""),
             f"  {v.message}",
             f"  expected: {render_value(v.expected, VALUE_LIMIT)}",
             f"  observed: {render_value(v.observed, VALUE_LIMIT)}"]
    return "\n".join(lines)


def history_excerpt(case: CaseResult, before: int = 8, after: int = 4) -> str:
    """The history around the first violation, one entry per line (`<--` marks violations)."""
    if not case.history:
        return ""
    hits = violating_indexes(case)
    first = min(hits) if hits else None
    entries = case.history
    if first is None:
        chosen = entries[-(before + after):]
    else:
        pos = next((i for i, e in enumerate(entries) if e.get("index") == first), first)
        chosen = entries[max(0, pos - before): pos + after + 1]
    lines = []
    if chosen and chosen[0] is not entries[0]:
        lines.append("  …")
    for e in chosen:
        mark = "  <-- violation" if e.get("index") in hits else ""
        t = e.get("time")
        tt = f"+{t:.4f}s" if isinstance(t, (int, float)) else "?"
        lines.append(f"  [{e.get('index')}] {tt} {e.get('process')} {e.get('type')} {e.get('f')} "
                     f"{render_value(e.get('value'), 300)}{mark}")
    if chosen and chosen[-1] is not entries[-1]:
        lines.append("  …")
    return "\n".join(lines)


def case_details(case: CaseResult, violations: list[Violation] | None = None) -> str:
    """The full text of a case's problem: violations, error, history excerpt, replay."""
    vs = case.violations if violations is None else violations
    parts = [f"Case: {case.case_id} ({case.kind}), outcome {case.outcome.value}, "
             f"adapter {case.adapter}"]
    if case.scenario_file:
        parts.append(f"Scenario file: {case.scenario_file}")
    if case.requirements:
        parts.append("Requirements: " + ", ".join(case.requirements))
    if case.error:
        parts.append(f"Error: {case.error}")
    for n, v in enumerate(vs, start=1):
        parts.append(_violation_text(n, v))
    for v in case.infos:
        parts.append(f"Note: [{v.requirement}] INFO {v.message}")
    excerpt = history_excerpt(case)
    if excerpt:
        parts.append("History (excerpt; full history in results.json):\n" + excerpt)
    if case.replay:
        parts.append(f"Replay: {case.replay}")
    return clean_text("\n\n".join(parts))


def _message(case: CaseResult, vs: list[Violation]) -> str:
    if vs:
        msg = f"[{vs[0].requirement}] {vs[0].message}"
        if len(vs) > 1:
            msg += f" (+{len(vs) - 1} more)"
    else:
        msg = case.error or case.outcome.value
    return clean_text(truncate(" ".join(msg.split()), MESSAGE_LIMIT))


def _testcase(parent: ET.Element, classname: str, case: CaseResult, strict: bool) -> str:
    """Append one `<testcase>`; return its JUnit status (passed/failure/error/skipped)."""
    tc = ET.SubElement(parent, "testcase", classname=classname, name=clean_text(case.case_id),
                       time=f"{max(case.duration, 0.0):.3f}")
    o = case.outcome
    should = [v for v in case.violations if str(v.level).upper() == "SHOULD"]
    failing = o.is_failure or (strict and o is Outcome.NON_STRICT)
    if case.known_failing and (failing or o is Outcome.NON_STRICT):
        el = ET.SubElement(tc, "skipped",
                           message="known failing: " + _message(case, case.violations))
        el.text = case_details(case)
        return "skipped"
    if o is Outcome.UNSUPPORTED:
        ET.SubElement(tc, "skipped", message=clean_text(
            "unsupported: " + (case.error or "the adapter does not declare a feature this case needs")))
        return "skipped"
    if o in (Outcome.TIMEOUT, Outcome.ERROR):
        el = ET.SubElement(tc, "error", type=o.value, message=_message(case, case.violations))
        el.text = case_details(case)
        return "error"
    if failing:
        el = ET.SubElement(tc, "failure", type=o.value, message=_message(case, case.violations))
        el.text = case_details(case)
        return "failure"
    notes = []
    if o is Outcome.NON_STRICT:
        notes.append("NON-STRICT: SHOULD requirements were violated (this fails the run only "
                     "with --strict).\n\n" + case_details(case, should or case.violations))
    elif case.infos:
        notes.append("\n".join(f"Note: [{v.requirement}] INFO {v.message}" for v in case.infos))
    if notes:
        ET.SubElement(tc, "system-out").text = clean_text("\n".join(notes))
    return "passed"


def _suite(root: ET.Element, name: str, run: RunResult, v: Verdict) -> ET.Element:
    suite = ET.SubElement(root, "testsuite", name=name)
    if run.started:
        suite.set("timestamp", iso_time(run.started))
    props = ET.SubElement(suite, "properties")
    judged = [("verdict", v.headline), ("verdict.state", v.state),
              ("verdict.exit_code", str(v.exit_code)),
              ("known_failing.cases", str(len(v.known_cases)))]
    if v.known_requirements:
        judged.append(("known_failing.requirements", " ".join(v.known_requirements)))
    for k, val in (("adapter", run.adapter), ("harness_version", run.harness_version), *judged,
                   *sorted(("adapter_option." + key, x) for key, x in run.adapter_options.items())):
        ET.SubElement(props, "property", name=clean_text(k), value=clean_text(val))
    return suite


def _close_suite(suite: ET.Element, stats: dict[str, int], elapsed: float) -> None:
    suite.set("tests", str(sum(stats.values())))
    suite.set("failures", str(stats.get("failure", 0)))
    suite.set("errors", str(stats.get("error", 0)))
    suite.set("skipped", str(stats.get("skipped", 0)))
    suite.set("time", f"{elapsed:.3f}")


def render_junit(run: RunResult, strict: bool = False,
                 stale_errors: list[str] | None = None) -> str:
    """The text of junit.xml for `run`."""
    root = ET.Element("testsuites", name=clean_text(f"presence-conformance: {run.adapter}"))
    v = verdict(run, strict, stale_errors)
    by_area: dict[str, list[CaseResult]] = {}
    for case in run.cases:
        by_area.setdefault(area_of_case(case), []).append(case)
    totals: dict[str, int] = {}
    total_time = 0.0
    for area in sorted(by_area, key=lambda a: (a == "generated", a)):
        classname = clean_text(f"presence.{area}")
        suite = _suite(root, classname, run, v)
        stats: dict[str, int] = {}
        elapsed = 0.0
        for case in by_area[area]:
            status = _testcase(suite, classname, case, strict)
            stats[status] = stats.get(status, 0) + 1
            elapsed += max(case.duration, 0.0)
        _close_suite(suite, stats, elapsed)
        for k, n in stats.items():
            totals[k] = totals.get(k, 0) + n
        total_time += elapsed
    if stale_errors:
        suite = _suite(root, "presence.expectations", run, v)
        for n, err in enumerate(stale_errors, start=1):
            tc = ET.SubElement(suite, "testcase", classname="presence.expectations",
                               name=f"known-failing/stale-{n}", time="0.000")
            ET.SubElement(tc, "failure", type="stale-known-failing",
                          message=clean_text(truncate(err, MESSAGE_LIMIT))).text = clean_text(err)
        _close_suite(suite, {"failure": len(stale_errors)}, 0.0)
        totals["failure"] = totals.get("failure", 0) + len(stale_errors)
    if run.partial:
        suite = _suite(root, "presence.harness", run, v)
        tc = ET.SubElement(suite, "testcase", classname="presence.harness", name="harness/partial-run",
                           time="0.000")
        reason = run.partial_reason or "the run was interrupted"
        ET.SubElement(tc, "error", type="partial",
                      message=clean_text(truncate(f"partial run: {reason}", MESSAGE_LIMIT))
                      ).text = clean_text(f"The run is partial: {reason}. Cases that did not run "
                                          f"are missing from this report.")
        _close_suite(suite, {"error": 1}, 0.0)
        totals["error"] = totals.get("error", 0) + 1
    _close_suite(root, totals, total_time)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(run: RunResult, path: Path, strict: bool = False,
                stale_errors: list[str] | None = None) -> Path:
    """Write junit.xml atomically."""
    return write_atomic(path, render_junit(run, strict, stale_errors))
