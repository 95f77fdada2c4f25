"""The published matrix (reports/published/matrix.md) matches what the package ships.

`scripts/publish-matrix` regenerates it; this test fails when a scenario or a requirement was
added, renamed or removed since, and when a headline calls a run with failures conforming.
"""

from __future__ import annotations

import re

from presence_conformance.harness.session import load_suite
from presence_conformance.spec import load_requirements
from support import ROOT, packaged_suite

MATRIX = ROOT / "reports" / "published" / "matrix.md"
CODE = re.compile(r"<code>([^<]+)</code>")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def _first_cells(section: str) -> list[str]:
    """The `<code>` name in the first cell of each table row."""
    names = []
    for line in section.splitlines():
        if line.startswith("| <code>"):
            match = CODE.search(line.split("|")[1])
            if match:
                names.append(match.group(1))
    return names


def test_the_matrix_lists_every_packaged_scenario_and_nothing_else() -> None:
    cases = set(_first_cells(_section(MATRIX.read_text(encoding="utf-8"), "## Cases")))
    scenarios = {s.case_id for s in packaged_suite()}
    generated = {c for c in cases if c.startswith("generated/")}
    assert generated, "the matrix shows the generated programs too (scripts/publish-matrix)"
    missing, stale = scenarios - cases, cases - scenarios - generated
    assert not missing and not stale, (
        f"reports/published/matrix.md is out of date (run scripts/publish-matrix): "
        f"missing {sorted(missing)}, no longer shipped {sorted(stale)}"
    )


def test_the_matrix_lists_every_catalogue_requirement() -> None:
    text = MATRIX.read_text(encoding="utf-8")
    shown = set(_first_cells(_section(text, "## Requirements")))
    catalogue = {r.id for r in load_requirements().requirements}
    assert catalogue <= shown, f"not in the matrix: {sorted(catalogue - shown)}"


def test_no_headline_calls_a_run_with_failures_conforming() -> None:
    summary = MATRIX.read_text(encoding="utf-8").split("## Requirements")[0].splitlines()
    header = next(line for line in summary if line.startswith("| Adapter"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    failing_columns = [i for i, c in enumerate(columns) if c.split()[-1] in FAILING]
    assert len(failing_columns) == len(FAILING), columns
    rows = [line for line in summary if line.startswith("| <code>")]
    assert rows
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if any(int(cells[i]) for i in failing_columns):
            assert cells[1] != "✅ CONFORMING", row


FAILING = ("fail", "timeout", "error")
