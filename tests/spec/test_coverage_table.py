"""scripts/coverage-table and the spec text it reads: cited points exist, docs/coverage.md is current."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    path = ROOT / "scripts" / "coverage-table"
    loader = importlib.machinery.SourceFileLoader("coverage_table", str(path))
    spec = importlib.util.spec_from_loader("coverage_table", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["coverage_table"] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


ct = _load()
SPEC_TEXT = ct.SPEC_TEXT.read_text(encoding="utf-8")


def test_every_cited_point_is_in_the_shipped_spec_text() -> None:
    points = ct.parse_points(SPEC_TEXT)
    missing = {p: reqs for p, reqs in ct.catalogue_points().items() if p not in points}
    assert missing == {}


def test_coverage_doc_is_up_to_date() -> None:
    doc, missing = ct.generate()
    assert missing == []
    assert ct.OUTPUT.read_text(encoding="utf-8") == doc, "run scripts/coverage-table"


def test_check_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ct.main(["--check"]) == 0
    stale = tmp_path / "coverage.md"
    stale.write_text(ct.OUTPUT.read_text(encoding="utf-8").replace("covered", "kovered", 1))
    monkeypatch.setattr(ct, "OUTPUT", stale)
    assert ct.main(["--check"]) == 1
    monkeypatch.setattr(ct, "OUTPUT", tmp_path / "absent.md")
    assert ct.main(["--check"]) == 1


def test_a_citation_of_a_missing_point_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(ct.CATALOGUE.read_text(encoding="utf-8"))
    raw["requirements"][0]["sources"]["ably"].append("RTP999z")
    catalogue = tmp_path / "requirements.yaml"
    catalogue.write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(ct, "CATALOGUE", catalogue)
    _, missing = ct.generate()
    assert missing == ["RTP999z"]
    assert ct.main(["--check"]) == 2


def test_shipped_spec_text_names_its_source_and_licence() -> None:
    head = SPEC_TEXT[:1500]
    assert "ably/specification" in head and "specifications/features.md" in head
    assert re.search(r"commit `[0-9a-f]{40}`", head)
    assert "Apache License, Version 2.0" in head


def test_shipped_spec_text_has_every_presence_family() -> None:
    points = ct.parse_points(SPEC_TEXT)
    for pid in ["RSP1", "RSP4b3", "RTP1", "RTP2h2b", "RTP18c", "RTP19a", "RTP5f", "TP3a", "TP3h"]:
        assert pid in points
    assert len([p for p in points if ct.PRESENCE.match(p)]) >= 140


def test_judgments_name_existing_points_with_reasons() -> None:
    judgments = yaml.safe_load(ct.JUDGMENTS.read_text(encoding="utf-8"))
    points = ct.parse_points(SPEC_TEXT)
    for pid, judgment in judgments.items():
        assert pid in points, pid
        if judgment.get("heading"):
            assert set(judgment) == {"heading"} and points[pid].rstrip().endswith(":"), pid
            continue
        assert judgment["testable"] is False and judgment["why"].strip(), pid


def test_judging_an_unknown_point_is_refused() -> None:
    with pytest.raises(SystemExit):
        ct.build(SPEC_TEXT, {"RTP999": {"testable": False, "why": "x"}}, {}, {})


def test_statuses() -> None:
    text = "\n".join(
        [
            "- `(RTP1)` covered one",
            "- `(RTP2)` cited only",
            "- `(RTP3)` nobody",
            "- `(RTP4)` This clause has been replaced by RTP1.",
            "- `(RTP5)` Side effects:",
            "- `(RTP6)` an internal thing",
            "- `(TR2)` a protocol point",
        ]
    )
    presence, other, missing = ct.build(
        text,
        {"RTP6": {"testable": False, "why": "internal"}},
        {"RTP1": ["a.b"], "RTP2": ["c.d"], "TR2": ["a.b"], "RTL99": ["e.f"]},
        {"a.b": ["area/one", "area/two"]},
    )
    status = {p.id: p.status for p in presence}
    assert status == {
        "RTP1": "covered",
        "RTP2": "cited, no scenario",
        "RTP3": "not covered",
        "RTP4": "retired",
        "RTP5": "heading",
        "RTP6": "not testable",
    }
    assert [p.id for p in other] == ["TR2"] and missing == ["RTL99"]
    doc = ct.render(presence, other)
    assert "| **testable** | **3** |" in doc
    assert "| **covered** | **1 (33%)** |" in doc
    assert "area/one, area/two" in doc


def test_scenario_tags_read_step_level_tags(tmp_path: Path) -> None:
    (tmp_path / "area").mkdir()
    (tmp_path / "area" / "s.yaml").write_text(
        "name: s\nrequirements: [a.b]\nsteps:\n  - get: {requirements: [c.d]}\n"
    )
    assert ct.scenario_tags(tmp_path) == {"a.b": ["area/s"], "c.d": ["area/s"]}
