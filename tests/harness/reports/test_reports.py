"""Tests of the report writers (harness/reports): JSON, JUnit, Markdown, HTML, matrix, known-failing
lists, exit codes and the `report` subcommand.

The catalogue here is a small fake with the shape of `spec.load_requirements()`, so these tests do
not depend on the real catalogue's contents.
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest
from presence_conformance.harness.cli.report import report_main
from presence_conformance.harness.reports import (
    CONFORMING,
    HARNESS_FAILURE,
    NOT_CONFORMING,
    USAGE,
    KnownFailing,
    exit_code,
    merge,
    merge_worker_results,
    write_matrix,
    write_reports,
)
from presence_conformance.harness.reports.common import (
    clean_text,
    history_windows,
    load_catalogue,
    requirement_statuses,
    verdict,
    write_atomic,
)
from presence_conformance.harness.reports.json_report import (
    SCHEMA_PATH,
    load_results,
    results_schema,
)
from presence_conformance.harness.reports.markdown import render_markdown
from presence_conformance.harness.results import CaseResult, Outcome, RunResult, Violation

HOSTILE = (
    '</script><img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
)
CONTROL = "nul\x00 bell\x07 esc\x1b[31m lone-surrogate\ud800 ok"


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@dataclass
class FakeRequirement:
    id: str
    area: str
    level: str
    text: str
    seed: str = ""
    ably: list[str] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)


@dataclass
class FakeCatalogue:
    requirements: list[FakeRequirement]
    areas: dict[str, str]

    @property
    def by_id(self) -> dict[str, FakeRequirement]:
        return {r.id: r for r in self.requirements}


def fake_catalogue() -> FakeCatalogue:
    reqs = [
        FakeRequirement(
            "enter.event-emitted",
            "enter",
            "MUST",
            "Entering emits an enter event to every subscriber.",
            "enter",
            ["RTP8"],
        ),
        FakeRequirement(
            "enter.binary-data",
            "enter",
            "MUST",
            "Binary member data round-trips unchanged.",
            "enter",
            ["RTP8e", "TP3e"],
        ),
        FakeRequirement(
            "enter.no-client-id-in-frame",
            "enter",
            "SHOULD",
            "A client should not send its clientId in its own ENTER.",
            "",
            ["RTP8c"],
        ),
        FakeRequirement(
            "history.limit-default-100",
            "history",
            "MUST",
            "history() without limit returns at most 100 items.",
            "history",
            ["RTP12c"],
        ),
        FakeRequirement(
            "history.order-backwards",
            "history",
            "MUST",
            "The default direction is backwards.",
            "history",
            ["RSP4b2"],
        ),
        FakeRequirement(
            "sync.converges",
            "sync",
            "MUST",
            "Every client's get() converges to the presence set.",
            "get",
            ["RTP18"],
        ),
        FakeRequirement(
            "sync.wait-for-sync",
            "sync",
            "SHOULD",
            "get(waitForSync) waits for the sync to complete.",
            "get",
            ["RTP11c1"],
        ),
        FakeRequirement(
            "errors.missing-client-id",
            "errors",
            "MUST",
            "Entering without a clientId is refused with 40012.",
            "enter",
            ["RTP8j"],
            [40012, 91000],
        ),
        FakeRequirement(
            "errors.order-of-codes",
            "errors",
            "INFO",
            "Which code wins when two apply (reference choice).",
            "",
        ),
        FakeRequirement(
            "wire.heartbeats",
            "wire",
            "MUST",
            "Heartbeats keep an idle connection open.",
            "",
            ["RTN23"],
        ),
    ]
    areas = {
        "enter": "Entering presence",
        "history": "Presence history",
        "sync": "Sync and get",
        "errors": "Errors",
        "wire": "Wire protocol",
    }
    return FakeCatalogue(reqs, areas)


def _history(n: int, bad: int | None = None) -> list[dict]:
    out = []
    for i in range(n):
        typ = ["invoke", "ok", "event"][i % 3]
        value = (
            {"action": "enter", "clientId": "alice", "data": {"n": i}} if typ == "event" else None
        )
        if i == bad:
            value = {"action": "enter", "clientId": "alice", "data": HOSTILE}
        out.append(
            {
                "index": i,
                "time": round(i * 0.0031, 6),
                "process": "bob" if typ == "event" else "alice",
                "type": typ,
                "f": "enter",
                "value": value,
                "step": i // 3,
            }
        )
    return out


def sample_run(adapter: str = "mine", partial: bool = False) -> RunResult:
    """A run with every outcome, binary data and hostile strings."""
    cases = [
        CaseResult(
            "enter/enter-emits-event",
            adapter,
            Outcome.PASS,
            ["enter.event-emitted"],
            duration=0.12,
            history=_history(6),
            infos=[
                Violation(
                    "errors.order-of-codes",
                    "INFO",
                    "error_codes",
                    "reference choice: 40012 before 40160",
                )
            ],
        ),
        CaseResult(
            "enter/binary-data",
            adapter,
            Outcome.FAIL,
            ["enter.binary-data"],
            duration=0.2,
            violations=[
                Violation(
                    "enter.binary-data",
                    "MUST",
                    "member_data",
                    "binary data came back as a string",
                    expected=b"\x00\x01\xff\xfe<tag>",
                    observed={"$binary": "AAH//jx0YWc+"},
                    step=1,
                    history_index=4,
                )
            ],
            history=_history(9, bad=4),
            replay="presence-conformance replay scenarios/enter/binary-data.yaml --adapter mine",
            scenario_file="scenarios/enter/binary-data.yaml",
        ),
        CaseResult(
            "enter/hostile-" + HOSTILE,
            adapter,
            Outcome.FAIL,
            ["enter.event-emitted", "enter.no-client-id-in-frame"],
            duration=0.05,
            violations=[
                Violation(
                    "enter.event-emitted",
                    "MUST",
                    "events_delivered",
                    "missing enter event " + HOSTILE + CONTROL,
                    expected=[{"action": "enter", "data": HOSTILE}],
                    observed=CONTROL,
                    step=2,
                    history_index=2,
                ),
                Violation(
                    "enter.no-client-id-in-frame",
                    "SHOULD",
                    "wire_frames",
                    "clientId sent in ENTER",
                    expected=None,
                    observed="alice",
                ),
            ],
            history=_history(5, bad=2),
            replay="presence-conformance replay 'failures/x y.yaml' --adapter mine # `rm -rf` | ```",
        ),
        CaseResult(
            "sync/wait-for-sync",
            adapter,
            Outcome.NON_STRICT,
            ["sync.wait-for-sync", "sync.converges"],
            duration=0.3,
            violations=[
                Violation(
                    "sync.wait-for-sync",
                    "SHOULD",
                    "wait_for_sync",
                    "get() returned before the sync completed",
                    expected="2 members",
                    observed="0 members",
                    step=3,
                )
            ],
            replay="presence-conformance replay scenarios/sync/wait-for-sync.yaml --adapter mine",
        ),
        CaseResult(
            "history/limit-default-100",
            adapter,
            Outcome.UNSUPPORTED,
            ["history.limit-default-100"],
            error="needs feature: history",
        ),
        CaseResult(
            "history/order-backwards",
            adapter,
            Outcome.TIMEOUT,
            ["history.order-backwards"],
            duration=5.0,
            error="step 2 (history): no answer within 5.0 s",
            history=_history(3),
            replay="presence-conformance replay scenarios/history/"
            "order-backwards.yaml --adapter mine",
        ),
        CaseResult(
            "errors/missing-client-id",
            adapter,
            Outcome.ERROR,
            ["errors.missing-client-id"],
            duration=0.01,
            error="Traceback (most recent call last):\n  KeyError: 'x'\x00",
        ),
        CaseResult(
            "generated/1234abcd",
            adapter,
            Outcome.PASS,
            ["sync.converges", "enter.event-emitted"],
            kind="generated",
            duration=1.5,
        ),
    ]
    return RunResult(
        adapter,
        cases,
        started=1_790_000_000.0,
        finished=1_790_000_012.5,
        partial=partial,
        partial_reason="interrupted (SIGINT) after 8 cases" if partial else None,
        harness_version="0.1.0",
        adapter_options={"endpoint": "127.0.0.1:8080", "token": HOSTILE},
    )


def passing_run(adapter: str) -> RunResult:
    cases = [
        CaseResult("enter/enter-emits-event", adapter, Outcome.PASS, ["enter.event-emitted"]),
        CaseResult("sync/converges", adapter, Outcome.PASS, ["sync.converges"]),
    ]
    return RunResult(adapter, cases, harness_version="0.1.0")


@pytest.fixture
def catalogue() -> FakeCatalogue:
    return fake_catalogue()


def write_all(run: RunResult, out: Path, **kw) -> dict[str, Path]:
    kw.setdefault("catalogue", fake_catalogue())
    paths = write_reports(run, out, **kw)
    return {p.name: p for p in paths}


# --------------------------------------------------------------------------------------------
# results.json
# --------------------------------------------------------------------------------------------


def test_writes_all_four_reports(tmp_path: Path) -> None:
    files = write_all(sample_run(), tmp_path / "out")
    assert sorted(files) == ["junit.xml", "report.html", "results.json", "summary.md"]
    assert all(p.stat().st_size > 0 for p in files.values())
    assert not list((tmp_path / "out").glob(".*.tmp")), "temporary files left behind"


def test_results_json_validates_and_round_trips(tmp_path: Path) -> None:
    run = sample_run()
    files = write_all(run, tmp_path)
    doc = json.loads(files["results.json"].read_text())
    jsonschema.Draft202012Validator.check_schema(results_schema())
    jsonschema.validate(doc, results_schema(), cls=jsonschema.Draft202012Validator)
    back = load_results(files["results.json"])
    assert [c.case_id for c in back.cases] == [c.case_id for c in run.cases]
    assert back.cases[2].violations[0].message == run.cases[2].violations[0].message
    # binary data uses the project's JSON convention
    assert doc["cases"][1]["violations"][0]["expected"] == {"$binary": "AAH//jx0YWc+"}


def test_schema_file_is_the_packaged_one() -> None:
    assert SCHEMA_PATH.parts[-3:] == ("spec", "schemas", "results.json")
    assert results_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_rejects_a_bad_outcome(tmp_path: Path) -> None:
    doc = sample_run().to_json()
    doc["cases"][0]["outcome"] = "passed"
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc, default=str))
    from presence_conformance.harness.reports.json_report import ResultsFileError

    with pytest.raises(ResultsFileError, match=r"cases/0/outcome"):
        load_results(p)


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "summary.md"
    target.write_text("old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


# --------------------------------------------------------------------------------------------
# JUnit
# --------------------------------------------------------------------------------------------


def _junit(run: RunResult, tmp_path: Path, **kw) -> ET.Element:
    files = write_all(run, tmp_path, formats=("junit",), **kw)
    return ET.parse(files["junit.xml"]).getroot()


def test_junit_structure(tmp_path: Path) -> None:
    root = _junit(sample_run(), tmp_path)
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {
        "presence.enter",
        "presence.sync",
        "presence.history",
        "presence.errors",
        "presence.generated",
    }
    enter = suites["presence.enter"]
    assert enter.get("tests") == "3" and enter.get("failures") == "2"
    tc = {t.get("name"): t for t in root.iter("testcase")}
    bin_case = tc["enter/binary-data"]
    assert bin_case.get("classname") == "presence.enter"
    assert bin_case.get("time") == "0.200"
    failure = bin_case.find("failure")
    assert failure is not None
    assert failure.get("message").startswith("[enter.binary-data] binary data came back")
    text = failure.text
    for needle in (
        "MUST",
        "expected:",
        "observed:",
        "<binary 9 B: 00 01 ff fe 3c 74 61 67 3e>",
        "History (excerpt",
        "<-- violation",
        "Replay: presence-conformance replay scenarios/enter/binary-data.yaml",
    ):
        assert needle in text
    assert tc["history/order-backwards"].find("error").get("type") == "timeout"
    assert tc["errors/missing-client-id"].find("error").get("type") == "error"
    assert tc["history/limit-default-100"].find("skipped") is not None
    assert tc["generated/1234abcd"].get("classname") == "presence.generated"
    totals = root.attrib
    assert (totals["tests"], totals["failures"], totals["errors"], totals["skipped"]) == (
        "8",
        "2",
        "2",
        "1",
    )


def test_junit_non_strict_passes_unless_strict(tmp_path: Path) -> None:
    tc = {t.get("name"): t for t in _junit(sample_run(), tmp_path / "a").iter("testcase")}
    ns = tc["sync/wait-for-sync"]
    assert ns.find("failure") is None
    assert "SHOULD" in ns.find("system-out").text and "--strict" in ns.find("system-out").text
    tc = {
        t.get("name"): t for t in _junit(sample_run(), tmp_path / "b", strict=True).iter("testcase")
    }
    assert tc["sync/wait-for-sync"].find("failure").get("type") == "non-strict"


def test_junit_escapes_hostile_and_control_characters(tmp_path: Path) -> None:
    files = write_all(sample_run(), tmp_path, formats=("junit",))
    raw = files["junit.xml"].read_bytes()
    raw.decode("utf-8")  # valid UTF-8 (the lone surrogate was escaped)
    assert b"\x00" not in raw and b"\x1b" not in raw
    root = ET.fromstring(raw)  # valid XML
    names = [t.get("name") for t in root.iter("testcase")]
    assert "enter/hostile-" + HOSTILE in names
    hostile = next(t for t in root.iter("testcase") if t.get("name").startswith("enter/hostile"))
    assert "\\x00" in hostile.find("failure").text and "\\ud800" in hostile.find("failure").text


def test_junit_marks_partial_and_stale(tmp_path: Path) -> None:
    root = _junit(sample_run(partial=True), tmp_path, stale_errors=["stale entry 'x/*'"])
    tc = {t.get("name"): t for t in root.iter("testcase")}
    assert "interrupted" in tc["harness/partial-run"].find("error").get("message")
    assert tc["known-failing/stale-1"].find("failure") is not None


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def test_markdown_summary(tmp_path: Path) -> None:
    md = write_all(sample_run(), tmp_path, formats=("markdown",))["summary.md"].read_text()
    first = md.splitlines()[0]
    assert "NOT CONFORMING" in first and "<code>mine</code>" in first
    assert (
        "| 2 | 1 | 1 | 2 | 1 | 1 | 0 |" in md
    )  # pass, unsupported, non-strict, fail, timeout, error, known
    for rid in [r.id for r in fake_catalogue().requirements]:
        assert f"<code>{rid}</code>" in md
    assert "▫️ not covered" in md  # wire.heartbeats
    assert "### Failures (5)" in md
    assert "presence-conformance replay scenarios/enter/binary-data.yaml --adapter mine" in md
    assert "expected: <code>&quot;" not in md  # strings are JSON-quoted, not HTML-quoted
    assert "<binary 9 B" not in md and "&lt;binary 9 B: 00 01 ff fe" in md
    # the hostile replay command is fenced with a longer fence than its backtick run
    assert "````sh\npresence-conformance replay 'failures/x y.yaml'" in md
    assert "<img" not in md and "</script>" not in md


def test_markdown_counts_row_matches(tmp_path: Path) -> None:
    md = render_markdown(sample_run(), load_catalogue(fake_catalogue()), verdict(sample_run()))
    header = next(line for line in md.splitlines() if line.startswith("| ✅ pass"))
    assert header.split(" | ")[:3] == ["| ✅ pass", "⏭️ unsupported", "⚠️ non-strict"]


def test_markdown_conforming_and_partial(tmp_path: Path) -> None:
    md = write_all(passing_run("ok"), tmp_path / "a", formats=("markdown",))["summary.md"]
    assert md.read_text().startswith("## ✅ CONFORMING — <code>ok</code>")
    run = passing_run("ok")
    run.partial, run.partial_reason = True, "worker crashed"
    md = write_all(run, tmp_path / "b", formats=("markdown",))["summary.md"].read_text()
    # a partial run that found no failure is no pass: it exits HARNESS_FAILURE
    assert md.startswith("## ⚠️ INCOMPLETE — <code>ok</code>")
    assert "**Partial run**: worker crashed" in md
    page = write_all(run, tmp_path / "c", formats=("html",))["report.html"].read_text()
    assert 'class="verdict warn" id="verdict">⚠ INCOMPLETE</span>' in page


def test_markdown_stays_under_the_github_limit() -> None:
    run = sample_run()
    big = run.cases[1]
    many = []
    for i in range(3000):
        c = CaseResult(
            f"enter/case-{i}",
            "mine",
            Outcome.FAIL,
            ["enter.binary-data"],
            violations=[
                Violation(
                    "enter.binary-data",
                    "MUST",
                    "c",
                    "x" * 400,
                    expected="e" * 500,
                    observed="o" * 500,
                )
            ],
            replay=big.replay,
        )
        many.append(c)
    run.cases += many
    text = render_markdown(
        run, load_catalogue(fake_catalogue(), [run]), verdict(run), max_bytes=200_000
    )
    assert len(text.encode()) <= 200_000
    assert "Truncated to stay within GitHub's summary size limit" in text
    full = render_markdown(run, load_catalogue(fake_catalogue(), [run]), verdict(run))
    assert len(full.encode()) < 1024 * 1024


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    page = write_all(sample_run(), tmp_path, formats=("html",))["report.html"].read_text()
    assert page.startswith("<!DOCTYPE html>")
    # no network: no external URLs in src/href, CSP forbids everything but the inline script
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page
    # hostile strings only ever appear escaped
    assert HOSTILE not in page
    assert "<img" not in page
    assert html.escape(HOSTILE, quote=True) in page
    assert page.count("<script>") == 1
    assert "\x00" not in page and "\\x00" in page
    # every catalogue requirement, not covered marked
    for r in fake_catalogue().requirements:
        assert f'data-req-id="{r.id}"' in page
    assert re.search(r'data-req-id="wire.heartbeats" data-outcome="not covered"', page)
    # failure details: expected vs observed, timeline with the violating entry, replay + copy
    assert 'data-case-id="enter/binary-data"' in page
    assert '<tr class="t-ok hit" id="h-3-4">' in page  # 3rd failure, history entry 4
    assert "&lt;binary 9 B: 00 01 ff fe 3c 74 61 67 3e&gt;" in page
    assert 'class="copy"' in page
    assert "Partial run" not in page


def test_history_windows_mark_omitted_stretches() -> None:
    case = CaseResult(
        "x/y",
        "mine",
        Outcome.FAIL,
        history=_history(100),
        violations=[
            Violation("enter.event-emitted", "MUST", "c", "m", history_index=50),
            Violation("enter.event-emitted", "MUST", "c", "m", history_index=90),
        ],
    )
    rows = history_windows(case, before=2, after=1)
    assert rows == [48, *case.history[48:52], 36, *case.history[88:92], 8]
    assert history_windows(
        CaseResult("x/y", "m", Outcome.TIMEOUT, history=_history(30)), before=2, after=1
    ) == [27, *_history(30)[27:]]


def test_html_partial_banner_and_verdict(tmp_path: Path) -> None:
    page = write_all(sample_run(partial=True), tmp_path, formats=("html",))[
        "report.html"
    ].read_text()
    assert 'id="partial-banner"' in page and "interrupted (SIGINT)" in page
    assert "NOT CONFORMING (partial run)" in page


def test_html_without_catalogue_still_lists_reported_requirements(
    tmp_path: Path, monkeypatch
) -> None:
    import presence_conformance.harness.reports.common as common
    from presence_conformance.spec import CatalogueError

    def broken(*a, **k):
        raise CatalogueError("requirements.yaml", ["catalogue missing"])

    monkeypatch.setattr(common, "load_requirements", broken)
    view = common.load_catalogue(None, [sample_run()])
    assert "catalogue missing" in (view.note or "")
    assert "enter.binary-data" in view.by_id and not view.by_id["enter.binary-data"].in_catalogue


# --------------------------------------------------------------------------------------------
# Requirement outcomes
# --------------------------------------------------------------------------------------------


def test_requirement_outcome_is_worst_over_cases(catalogue: FakeCatalogue) -> None:
    run = sample_run()
    st = requirement_statuses(run, load_catalogue(catalogue, [run]))
    assert st["enter.binary-data"].outcome == "fail"
    assert st["enter.event-emitted"].outcome == "fail"  # passes once, fails in the hostile case
    assert st["enter.no-client-id-in-frame"].outcome == "non-strict"
    # sync.converges is checked by a non-strict case that did not violate it: it passed there
    assert st["sync.converges"].outcome == "pass"
    assert st["sync.wait-for-sync"].outcome == "non-strict"
    assert st["history.limit-default-100"].outcome == "unsupported"
    assert st["history.order-backwards"].outcome == "timeout"
    assert st["errors.missing-client-id"].outcome == "error"
    assert st["wire.heartbeats"].outcome == "not covered"


# --------------------------------------------------------------------------------------------
# Known-failing lists, strictness, exit codes
# --------------------------------------------------------------------------------------------


def test_known_failing_parse() -> None:
    kf = KnownFailing.parse(
        "# header\n\nenter/binary-data   # server mangles bytes\nhistory.*\n  errors/*\t# tabbed\n",
        "mine.txt",
    )
    assert [(e.pattern, e.reason, e.line) for e in kf.entries] == [
        ("enter/binary-data", "server mangles bytes", 3),
        ("history.*", "", 4),
        ("errors/*", "tabbed", 5),
    ]


def test_listed_failures_do_not_fail_the_run(tmp_path: Path) -> None:
    run = sample_run()
    kf = KnownFailing.parse(
        "enter/*\nhistory.order-backwards  # slow server\nerrors.missing-client-id\nsync/*\n"
    )
    assert kf.apply(run) == []
    assert exit_code(run, strict=False, stale_errors=[]) == CONFORMING
    assert exit_code(run, strict=True, stale_errors=[]) == CONFORMING
    assert {c.case_id for c in run.cases if c.known_failing} == {
        "enter/binary-data",
        "enter/hostile-" + HOSTILE,
        "history/order-backwards",
        "errors/missing-client-id",
        "sync/wait-for-sync",
    }
    files = write_all(run, tmp_path)
    assert (
        files["summary.md"]
        .read_text()
        .startswith("## 🔕 CONFORMING EXCEPT KNOWN DEVIATIONS (4 requirements)")
    )
    tc = {t.get("name"): t for t in ET.parse(files["junit.xml"]).getroot().iter("testcase")}
    skipped = tc["enter/binary-data"].find("skipped")
    assert skipped is not None and skipped.get("message").startswith("known failing: ")
    assert 'data-known="1"' in files["report.html"].read_text()


def test_requirement_pattern_matches_only_violated_requirements() -> None:
    run = sample_run()
    # the hostile case checks enter.no-client-id-in-frame but fails because of a MUST too;
    # a requirement pattern for the SHOULD only marks it as known (it matched a violation)
    kf = KnownFailing.parse("sync.converges\n")
    errors = kf.apply(run)
    assert len(errors) == 1 and "matched only" in errors[0] and "pass" in errors[0]
    assert not any(c.known_failing for c in run.cases)


def test_stale_entry_fails_the_run(tmp_path: Path) -> None:
    run = passing_run("ok")
    kf = KnownFailing.parse("enter/enter-emits-event  # fixed long ago\nnothing/*\n", "ok.txt")
    errors = kf.apply(run)
    assert len(errors) == 2
    assert "'enter/enter-emits-event' (ok.txt:1)" in errors[0] and "matched only pass" in errors[0]
    assert "matched no case" in errors[1]
    assert exit_code(run, False, errors) == NOT_CONFORMING
    files = write_all(run, tmp_path, known_failing=kf)
    md = files["summary.md"].read_text()
    assert md.startswith("## ❌ NOT CONFORMING") and "Stale known-failing entries" in md
    assert 'id="stale"' in files["report.html"].read_text()


def test_stale_check_ignores_unmatched_patterns_in_partial_runs() -> None:
    run = passing_run("ok")
    run.partial = True
    assert KnownFailing.parse("nothing/*\n").apply(run) == []


def test_known_failing_file_and_shipped_lists(tmp_path: Path) -> None:
    p = tmp_path / "k.txt"
    p.write_text("enter/*  # reason\n")
    assert KnownFailing.load(p).entries[0].source == str(p)
    assert KnownFailing.for_adapter("no-such-adapter").entries == []
    assert (
        KnownFailing.for_adapter("reference").entries == []
    )  # the reference has no known failures
    assert KnownFailing.for_adapter("../../etc/passwd").entries == []


def test_exit_codes() -> None:
    assert (CONFORMING, NOT_CONFORMING, USAGE, HARNESS_FAILURE) == (0, 1, 2, 3)
    run = sample_run()
    assert exit_code(run, False, []) == NOT_CONFORMING
    ok = passing_run("ok")
    assert exit_code(ok, False, []) == CONFORMING
    ns = RunResult("ns", [CaseResult("sync/x", "ns", Outcome.NON_STRICT, ["sync.wait-for-sync"])])
    assert exit_code(ns, strict=False) == CONFORMING
    assert exit_code(ns, strict=True) == NOT_CONFORMING
    ok.partial = True
    assert exit_code(ok, False, []) == HARNESS_FAILURE
    assert exit_code(sample_run(partial=True), False, []) == NOT_CONFORMING


# --------------------------------------------------------------------------------------------
# Matrix and worker merge
# --------------------------------------------------------------------------------------------


def test_matrix_across_three_adapters(tmp_path: Path, catalogue: FakeCatalogue) -> None:
    runs = [sample_run("alpha"), passing_run("beta"), sample_run("gamma", partial=True)]
    m = merge(runs, catalogue=catalogue)
    assert m.columns == ["alpha", "beta", "gamma"]
    assert m.requirement_outcome("enter.binary-data", "alpha") == "fail"
    assert m.requirement_outcome("enter.binary-data", "beta") == "not covered"
    assert m.requirement_outcome("sync.converges", "beta") == "pass"
    assert m.case_outcome("enter/binary-data", "beta") is None
    assert m.differs("enter.binary-data") and not m.differs("wire.heartbeats")
    paths = write_matrix(runs, tmp_path, catalogue=catalogue)
    assert [p.name for p in paths] == ["matrix.html", "matrix.md"]
    page = paths[0].read_text()
    assert HOSTILE not in page and "<img" not in page
    for r in catalogue.requirements:
        assert f'data-req-id="{r.id}"' in page
    md = paths[1].read_text()
    assert (
        "| Requirement | Level | <code>alpha</code> | <code>beta</code> | <code>gamma</code> |"
        in md
    )
    assert "❌ NOT CONFORMING (partial)" in md
    row = next(line for line in md.splitlines() if line.startswith("| <code>enter.binary-data"))
    assert row.count("❌ fail") == 2 and "▫️ not covered" in row


def test_matrix_disambiguates_repeated_adapters(catalogue: FakeCatalogue) -> None:
    m = merge([passing_run("x"), passing_run("x")], catalogue=catalogue)
    assert m.columns == ["x", "x (2)"]


def test_matrix_columns_name_the_wire_format(catalogue: FakeCatalogue) -> None:
    runs = [passing_run("sdk"), passing_run("sdk"), passing_run("sdk")]
    runs[0].adapter_options = {"protocol": "json"}
    runs[1].adapter_options = {"protocol": "msgpack", "timeout": "5"}
    m = merge(runs, catalogue=catalogue)
    assert m.columns == ["sdk (json)", "sdk (msgpack)", "sdk"]


def test_merge_worker_results() -> None:
    full = sample_run()
    w1 = RunResult(
        "mine",
        full.cases[:4],
        started=10.0,
        finished=20.0,
        harness_version="0.1.0",
        adapter_options={"a": "1"},
    )
    w2 = RunResult(
        "mine",
        full.cases[4:],
        started=11.0,
        finished=25.0,
        partial=True,
        partial_reason="worker gw1 crashed",
        adapter_options={"b": "2"},
    )
    dup = CaseResult("generated/1234abcd", "mine", Outcome.FAIL, ["sync.converges"])
    w3 = RunResult("mine", [dup], started=12.0, finished=13.0)
    merged = merge_worker_results([w1, w2, w3])
    assert merged.adapter == "mine"
    assert len(merged.cases) == len(full.cases)
    assert [c.case_id for c in merged.cases] == sorted(c.case_id for c in full.cases)
    assert (
        next(c for c in merged.cases if c.case_id == "generated/1234abcd").outcome is Outcome.FAIL
    )
    assert (merged.started, merged.finished) == (10.0, 25.0)
    assert merged.partial and merged.partial_reason == "worker gw1 crashed"
    assert merged.adapter_options == {"a": "1", "b": "2"}
    assert merged.harness_version == "0.1.0"
    with pytest.raises(ValueError, match="different adapters"):
        merge_worker_results([w1, passing_run("other")])


# --------------------------------------------------------------------------------------------
# `report` subcommand
# --------------------------------------------------------------------------------------------


def _results_file(run: RunResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_all(run, path.parent, formats=("json",))["results.json"]


def test_report_from_re_renders(tmp_path: Path, capsys) -> None:
    src = _results_file(sample_run(), tmp_path / "run" / "results.json")
    out = tmp_path / "again"
    assert report_main(["--from", str(src), "--out", str(out)]) == NOT_CONFORMING
    assert sorted(p.name for p in out.iterdir()) == [
        "junit.xml",
        "report.html",
        "results.json",
        "summary.md",
    ]
    assert json.loads((out / "results.json").read_text()) == json.loads(src.read_text())
    ok = _results_file(passing_run("ok"), tmp_path / "ok" / "results.json")
    assert (
        report_main(["--from", str(ok), "--out", str(tmp_path / "ok2"), "--format", "markdown"])
        == CONFORMING
    )
    assert [p.name for p in (tmp_path / "ok2").iterdir()] == ["summary.md"]


def test_report_from_with_known_failing(tmp_path: Path, capsys) -> None:
    src = _results_file(passing_run("ok"), tmp_path / "run" / "results.json")
    kf = tmp_path / "known.txt"
    kf.write_text("sync/converges  # was broken\n")
    code = report_main(
        ["--from", str(src), "--out", str(tmp_path / "o"), "--known-failing", str(kf)]
    )
    assert code == NOT_CONFORMING
    assert "stale known-failing entry 'sync/converges'" in capsys.readouterr().err


def test_report_merge_writes_matrix(tmp_path: Path) -> None:
    files = [_results_file(sample_run(n), tmp_path / n / "results.json") for n in ("a", "b", "c")]
    assert report_main(["--merge", *map(str, files), "--out", str(tmp_path / "m")]) == CONFORMING
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["matrix.html", "matrix.md"]


def test_report_from_workers(tmp_path: Path) -> None:
    full = sample_run()
    a = _results_file(RunResult("mine", full.cases[:3]), tmp_path / "w1" / "results.json")
    b = _results_file(RunResult("mine", full.cases[3:]), tmp_path / "w2" / "results.json")
    assert (
        report_main(["--from", str(a), str(b), "--out", str(tmp_path / "o"), "--format", "json"])
        == NOT_CONFORMING
    )
    merged = load_results(tmp_path / "o" / "results.json")
    assert len(merged.cases) == len(full.cases)


def test_report_usage_errors(tmp_path: Path, capsys) -> None:
    assert report_main([]) == USAGE
    assert report_main(["--from", str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == USAGE
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert report_main(["--from", str(bad), "--out", str(tmp_path)]) == USAGE
    bad.write_text('{"adapter": "x", "cases": [{"case_id": "a/b"}]}')
    assert report_main(["--from", str(bad), "--out", str(tmp_path)]) == USAGE
    assert "not a results file" in capsys.readouterr().err
    ok = _results_file(passing_run("ok"), tmp_path / "ok" / "results.json")
    assert report_main(["--from", str(ok), "--out", str(tmp_path), "--format", "pdf"]) == USAGE
    assert report_main(["--help"]) == CONFORMING


def test_clean_text() -> None:
    assert clean_text("a\x00b\x1bc\ud800d\te\nf") == "a\\x00b\\x1bc\\ud800d\te\nf"
