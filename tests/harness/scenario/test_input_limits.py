"""Untrusted input is bounded: scenario and replay files, values an implementation returns, bridge
lines, and text that reaches the terminal.

- every limit on a scenario file (size, alias expansion, nesting depth, integer size, clients,
  steps) is a usage error (exit 2) naming the file and the limit, refused quickly;
- values recorded from an implementation are truncated with a marker: a 10-case run whose
  implementation returns a 100 KB clientId or megabyte data writes a report of at most a few MB;
- a bridge line that cannot be read (nested 100k deep) makes the case `error`, not `timeout`;
- control characters from an implementation are escaped in what the CLI prints.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import presence_conformance.harness.adapters.registry
import presence_conformance.harness.output
import pytest
from presence_conformance.harness.adapters.bridge import BridgeAdapter
from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.harness.cli import main
from presence_conformance.harness.record.bounds import (
    MAX_BINARY,
    MAX_ITEMS,
    MAX_TEXT,
    bounded,
)
from presence_conformance.harness.record.history import History
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.scenario import (
    MAX_FILE_BYTES,
    ScenarioError,
    load_scenario,
    scenario_from_dict,
)
from presence_conformance.harness.scenario.rules import MAX_CLIENTS, MAX_STEPS
from presence_conformance.harness.scenario.yaml_source import MAX_DEPTH, MAX_VALUES
from presence_conformance.harness.session import ConformanceSession, describe_case, printable
from presence_conformance.reference_impl.types import PresenceMessage

# pytest rewrites these on first import; importing them here keeps that out of the tests, where
# adapter loop threads run (see tests/test_adapter_escapes.py)
_PREIMPORTED = (presence_conformance.harness.adapters.registry, presence_conformance.harness.output)

HEAD = """description: A member that entered is in the presence set.
requirements: [enter.adds-member]
"""
GOOD = (
    HEAD
    + """clients:
  alice: {client_id: alice}
  bob: {client_id: bob}
channels: [room]
steps:
  - enter: {client: alice, channel: room, data: a}
  - get: {client: bob, channel: room, expect: [{client: alice, data: a}]}
"""
)

# the classic "billion laughs", 9 levels of 9 aliases each: 9**9 strings once expanded
LAUGHS = (
    "description: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(
        f"{key}: &{key} [{', '.join([f'*{prev}'] * 9)}]\n"
        for prev, key in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "requirements: [enter.adds-member]\n"
)


def _many_clients(n: int) -> str:
    clients = "".join(f"  c{i}: {{}}\n" for i in range(n))
    return f"{HEAD}clients:\n{clients}channels: [room]\nsteps:\n  - enter: {{client: c1, channel: room}}\n"


def _many_steps(n: int) -> str:
    steps = "  - enter: {client: alice, channel: room}\n" * n
    return f"{HEAD}clients:\n  alice: {{}}\nchannels: [room]\nsteps:\n{steps}"


CASES = {
    "size": ("description: '" + "x" * (MAX_FILE_BYTES + 10) + "'\n", "MAX_FILE_BYTES"),
    "aliases": (LAUGHS, "MAX_VALUES"),
    "depth": ("description: " + "[" * 100_000 + "]" * 100_000 + "\n", "MAX_DEPTH"),
    "depth-block": (
        "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)) + f"{'  ' * 80}x\n",
        "MAX_DEPTH",
    ),
    "integer": (GOOD.replace("data: a}\n  - get", "data: " + "7" * 5000 + "}\n  - get"), "MAX_INT"),
    "hex-integer": (
        GOOD.replace("data: a}\n  - get", "data: 0x" + "f" * 5000 + "}\n  - get"),
        "MAX_INT",
    ),
    "clients": (_many_clients(5000), "MAX_CLIENTS"),
    "steps": (_many_steps(MAX_STEPS + 1), "MAX_STEPS"),
}


def test_the_laughs_are_small() -> None:
    assert len(LAUGHS.encode()) < 700


@pytest.mark.parametrize("name", list(CASES))
def test_each_limit_is_a_scenario_error_naming_the_file_and_the_limit(
    name: str, tmp_path: Path
) -> None:
    text, limit = CASES[name]
    path = tmp_path / "enter" / f"{name}.yaml"
    path.parent.mkdir()
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    if name in ("size", "aliases", "depth", "integer"):  # the others parse a large file first
        assert time.monotonic() - started < 3.0
    message = str(info.value)
    assert str(path) in message and limit in message and "(rule: limit)" in message, message


@pytest.mark.parametrize("name", ["aliases", "depth", "integer", "clients"])
def test_the_cli_refuses_them_with_exit_2(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(CASES[name][0])
    assert main(["replay", str(path), "--adapter", "reference"]) == 2
    err = capsys.readouterr().err
    assert "malformed scenario" in err and str(path) in err and CASES[name][1] in err, err
    folder = tmp_path / "suite" / "enter"
    folder.mkdir(parents=True)
    (folder / "bad.yaml").write_text(CASES[name][0])
    assert main(["run", "--adapter", "reference", "--scenarios", str(folder.parent)]) == 2


def test_limits_leave_room_for_real_scenarios(tmp_path: Path) -> None:
    path = tmp_path / "enter" / "ok.yaml"
    path.parent.mkdir()
    path.write_text(
        _many_steps(200).replace("clients:\n  alice: {}", "clients:\n  alice: {}\n  b: {}")
    )
    assert len(load_scenario(path).steps) == 200
    assert MAX_CLIENTS >= 100 and MAX_STEPS >= 1000 and MAX_VALUES >= 10_000
    merge = GOOD.replace(
        "  alice: {client_id: alice}\n  bob: {client_id: bob}",
        "  alice: &a {client_id: alice}\n  bob: {<<: *a}",
    )
    assert "bob" in load_scenario(_write(tmp_path / "m" / "merge.yaml", merge)).clients


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- values recorded from an implementation ------------------------------------------------------


def test_bounded_keeps_small_values_and_marks_what_it_cuts() -> None:
    small = {"a": [1, 2.5, None, True, "x"], "data": {"$binary": "AAEC"}}
    assert bounded(small) == small
    long = bounded("x" * 100_000)
    assert long.startswith("x" * MAX_TEXT) and long.endswith("…[truncated: 100000 characters]")
    binary = bounded(b"\x00" * 1_000_000)
    assert binary["$truncated"] == f"1000000 bytes, the first {MAX_BINARY} kept"
    encoded = bounded({"$binary": "AAAA" * 100_000})
    assert len(encoded["$binary"]) <= MAX_BINARY * 4 // 3 and "$truncated" in encoded
    items = bounded(list(range(10 * MAX_ITEMS)))
    assert len(items) == MAX_ITEMS + 1 and "more items" in items[-1]
    assert "bits" in bounded(10**5000)
    json.dumps(bounded({"k" * 10_000: [[[[["deep"]]]]] * 1000, "n": 10**5000}))


def test_the_history_records_bounded_values() -> None:
    history = History()
    history.record("ok", "alice", "get", [{"clientId": "c" * 100_000}])
    assert len(json.dumps(history.entries)) < 2_000


class _Huge(ReferencePresence):
    """get() returns the members with a 100 KB clientId and 1 MB of binary data."""

    async def get(
        self, client_id: Any = None, connection_id: Any = None, wait_for_sync: Any = True
    ) -> Any:
        members = await super().get(client_id, connection_id, wait_for_sync)
        return [
            PresenceMessage(
                action=m.action,
                client_id="c" * 100_000,
                connection_id=m.connection_id,
                data=b"\x01" * 1_000_000,
                timestamp=m.timestamp,
                id=m.id,
            )
            for m in members
        ] + [m for m in members]


class _HugeConnection(ReferenceConnection):
    presence_class = _Huge


class HugeValues(ReferenceAdapter):
    connection_class = _HugeConnection


def test_a_run_with_megabyte_values_writes_a_small_report(tmp_path: Path) -> None:
    from presence_conformance.harness.output import write_run

    scenarios = [
        scenario_from_dict(
            {
                "description": "d",
                "requirements": ["enter.adds-member"],
                "clients": {"alice": {"client_id": "alice"}, "bob": {"client_id": "bob"}},
                "channels": ["room"],
                "steps": [
                    {"enter": {"client": "alice", "channel": "room", "data": "a"}},
                    {
                        "get": {
                            "client": "bob",
                            "channel": "room",
                            "expect": [{"client": "alice", "data": "a"}],
                        }
                    },
                ],
            },
            case_id=f"enter/huge-{i}",
        )
        for i in range(10)
    ]
    session = ConformanceSession(HugeValues(), settings=RunSettings(op_timeout=0.5))
    try:
        run = session.run_all(scenarios)
    finally:
        session.stop()
    assert len(run.cases) == 10 and all(c.outcome is Outcome.FAIL for c in run.cases)
    written = write_run(run, tmp_path / "out")
    size = sum(p.stat().st_size for p in written)
    assert size < 4_000_000, {p.name: p.stat().st_size for p in written}
    text = (tmp_path / "out" / "results.json").read_text()
    assert "[truncated: 100000 characters]" in text
    assert "1000000 bytes, the first" in text


def test_an_adapter_error_of_a_megabyte_is_cut_in_the_case() -> None:
    class Loud(ReferenceAdapter):
        async def connect(self, client_id: Any, capability: Any = None) -> Any:
            raise RuntimeError("x" * 1_000_000)

    session = ConformanceSession(Loud(), settings=RunSettings(op_timeout=0.5))
    try:
        case = session.run_case(scenario_from_dict(json.loads(json.dumps(_SIMPLE)), case_id="e/x"))
    finally:
        session.stop()
    assert case.outcome is Outcome.ERROR and len(case.error or "") < 10_000
    assert "truncated" in (case.error or "")


_SIMPLE = {
    "description": "d",
    "requirements": ["enter.adds-member"],
    "clients": {"alice": {"client_id": "alice"}},
    "channels": ["room"],
    "steps": [{"enter": {"client": "alice", "channel": "room", "data": "a"}}],
}


# -- the bridge ----------------------------------------------------------------------------------

DEEP_CHILD = r"""
import json, sys

for line in sys.stdin:
    req = json.loads(line)
    op, rid = req["op"], req["id"]
    if op == "hello":
        result = {"protocol": 1, "sdk": "deep", "features": ["multiple-connections"], "ops": []}
    elif op == "connect":
        result = {"connectionId": "conn-" + req["connection"], "clientId": req["clientId"]}
    elif op == "shutdown":
        print(json.dumps({"id": rid, "ok": True, "result": None}), flush=True)
        break
    else:
        sys.stdout.write("[" * 100000 + "]" * 100000 + "\n")
        sys.stdout.flush()
        continue
    print(json.dumps({"id": rid, "ok": True, "result": result}), flush=True)
"""


def test_a_bridge_line_that_cannot_be_read_is_an_error_not_a_timeout(tmp_path: Path) -> None:
    child = tmp_path / "deep_child.py"
    child.write_text(DEEP_CHILD)
    bridge = BridgeAdapter({"command": shlex.join([sys.executable, str(child)])})
    # a reader that died on the line would leave the request to time out (20 s): it is killed
    session = ConformanceSession(bridge, "bridge", settings=RunSettings(op_timeout=30.0))
    started = time.monotonic()
    try:
        case = session.run_case(scenario_from_dict(json.loads(json.dumps(_SIMPLE)), case_id="e/x"))
    finally:
        session.stop()
    assert case.outcome is Outcome.ERROR, (case.outcome, case.error)
    assert "RecursionError" in (case.error or ""), case.error
    assert time.monotonic() - started < 15.0


# -- the terminal --------------------------------------------------------------------------------


def test_printable_escapes_control_characters() -> None:
    assert printable("a\x00b\x1b[2Jc\rd\x7f\x9b\u202e\te\nf") == (
        "a\\x00b\\x1b[2Jc\\x0dd\\x7f\\x9b\\u202e\te\nf"
    )


class _Nasty(ReferencePresence):
    async def get(
        self, client_id: Any = None, connection_id: Any = None, wait_for_sync: Any = True
    ) -> Any:
        members = await super().get(client_id, connection_id, wait_for_sync)
        return [
            PresenceMessage(
                action=m.action,
                client_id="evil\x00\x1b]0;pwned\x07\x1b[2J",
                connection_id=m.connection_id,
                data=m.data,
                timestamp=m.timestamp,
                id=m.id,
            )
            for m in members
        ]


class _NastyConnection(ReferenceConnection):
    presence_class = _Nasty


class NastyAdapter(ReferenceAdapter):
    connection_class = _NastyConnection


@pytest.fixture
def nasty(tmp_path: Path) -> Path:
    module = tmp_path / "nasty_adapters.py"
    module.write_text(
        "from presence_conformance.harness.adapters.reference import ReferenceAdapter\n\n"
        "class Loud(ReferenceAdapter):\n"
        "    async def connect(self, client_id, capability=None):\n"
        "        raise RuntimeError('bell\\x07 esc\\x1b[2J nul\\x00 rtl\\u202e')\n"
    )
    _write(tmp_path / "s" / "enter" / "x.yaml", GOOD)
    return module


def test_the_cli_escapes_what_the_implementation_wrote(
    nasty: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "--adapter", f"{nasty}:Loud", "--scenarios", str(tmp_path / "s"),
         "--report-dir", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 1
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert not any(ch in text for ch in "\x00\x07\x1b\u202e")
    assert "bell\\x07 esc\\x1b[2J nul\\x00 rtl\\u202e" in captured.out
    assert (
        main(["replay", str(tmp_path / "s" / "enter" / "x.yaml"), "--adapter", f"{nasty}:Loud"])
        == 1
    )
    replay = capsys.readouterr().out
    assert "\x1b" not in replay and "esc\\x1b[2J" in replay


def test_describe_case_escapes_observed_values() -> None:
    session = ConformanceSession(NastyAdapter(), settings=RunSettings(op_timeout=0.3))
    scenario = scenario_from_dict(
        {
            "description": "d",
            "requirements": ["enter.adds-member"],
            "clients": {"alice": {"client_id": "alice"}, "bob": {"client_id": "bob"}},
            "channels": ["room"],
            "steps": [
                {"enter": {"client": "alice", "channel": "room", "data": "a"}},
                {
                    "get": {
                        "client": "bob",
                        "channel": "room",
                        "expect": [{"client": "alice", "data": "a"}],
                    }
                },
            ],
        },
        case_id="enter/nasty",
    )
    try:
        case = session.run_case(scenario)
    finally:
        session.stop()
    assert case.outcome is Outcome.FAIL, case.error
    text = describe_case(case)
    assert "evil" in text and not any(ch in text for ch in "\x00\x07\x1b")
