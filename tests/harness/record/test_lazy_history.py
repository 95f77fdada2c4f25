"""The history bounds its values when its entries are read, not when they are recorded: what
a report shows must be exactly what bounding at record time showed, `time` included."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.mutants import get_mutant
from presence_conformance.harness.record import history as history_module
from presence_conformance.harness.record.bounds import MAX_TEXT, bounded
from presence_conformance.harness.record.history import History
from presence_conformance.harness.results import CaseResult
from presence_conformance.harness.run import state as state_module
from presence_conformance.harness.run.runner import RunSettings, run_scenario
from support import packaged

SETTINGS = RunSettings(op_timeout=0.5, quiet_period=0.02, keep_history=True)
OPTIONS = {"leave_grace": "0.05"}


def test_values_are_bounded_when_read_and_time_is_the_record_time(monkeypatch: Any) -> None:
    clock = iter([100.0, 100.5, 101.25, 500.0])
    monkeypatch.setattr(history_module, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    history = History()  # t0 = 100.0
    long = "x" * (MAX_TEXT + 50)
    assert history.record("invoke", "alice", "enter", {"data": long}, 1) == 0
    assert history.record("event", "bob", "event", [long, b"\x00" * 300], 1) == 1
    assert len(history) == 2
    first = history.entries
    assert [e["time"] for e in first] == [0.5, 1.25]  # not when read (400.0 by then)
    assert [e["value"] for e in first] == [bounded({"data": long}), bounded([long, b"\x00" * 300])]
    assert history.record("ok", "alice", "enter", long) == 2
    again = history.entries
    assert again is first and len(again) == 3  # earlier entries are not bounded twice
    assert again[0]["value"] == bounded({"data": long}) and again[2]["value"] == bounded(long)
    assert history.excerpt(None) == again


def test_a_value_bounded_now_is_not_bounded_again() -> None:
    history = History()
    code = ["c" * (MAX_TEXT + 1)]  # bounding twice would cut the marker as well
    history.record("fail", "alice", "enter", {"code": code}, 1, bound_now=True)
    code[0] = "changed after recording"
    assert history.entries[0]["value"] == bounded({"code": ["c" * (MAX_TEXT + 1)]})


class _Shadowed(History):
    """A history that also bounds every value at record time, as the history used to."""

    made: list[_Shadowed] = []

    def __init__(self) -> None:
        super().__init__()
        self.eager: list[Any] = []
        _Shadowed.made.append(self)

    def record(self, type_: str, process: str, f: str, value: Any = None, step: Any = None, *,
               bound_now: bool = False) -> int:  # fmt: skip
        self.eager.append(bounded(value))
        return super().record(type_, process, f, value, step, bound_now=bound_now)


CASES = {  # a mutant, and shipped scenarios among which one catches it
    "large-string-truncated": ["data/edges", "data/string"],  # long strings, cut
    "binary-as-text": ["data/binary", "message/data-everywhere"],
    "history-duplicates": ["history/empty", "history/limit-default-100"],
    "long-client-id-truncated": ["message/client-id-unicode-and-long"],
    "get-client-id-prefix-match": [
        "get/filter-client-id-shared-prefix",
        "get/filter-both-mismatch",
    ],
    "no-synthesized-leave": ["disconnect/grace-period", "interleave/reconnect-within-grace"],
    "no-reentry-after-failed-resume": [  # interrupts, refused resumes
        "disconnect/reenter-after-failed-resume",
        "disconnect/refused-resume-within-grace",
    ],
}


@pytest.mark.parametrize("mutant", sorted(CASES))
def test_a_case_shows_the_history_bounding_at_record_time_showed(
    mutant: str, monkeypatch: Any
) -> None:
    monkeypatch.setattr(state_module, "History", _Shadowed)
    scenarios = [packaged(case_id) for case_id in CASES[mutant]]

    async def run_all(adapter: Any) -> list[CaseResult]:
        await adapter.start()
        try:
            return [await run_scenario(s, adapter, SETTINGS) for s in scenarios]
        finally:
            await adapter.stop()

    _Shadowed.made.clear()
    results = asyncio.run(run_all(ReferenceAdapter(dict(OPTIONS))))
    results += asyncio.run(run_all(get_mutant(mutant)(dict(OPTIONS))))
    assert any(r.outcome.is_failure for r in results[len(scenarios) :]), mutant
    assert len(_Shadowed.made) == len(results)
    for result, history in zip(results, _Shadowed.made, strict=True):
        assert result.history, result.case_id
        assert [e["value"] for e in result.history] == history.eager, result.case_id
        assert [e["index"] for e in result.history] == list(range(len(history.eager)))
