"""Scenario files: good files load, every kind of malformed file is reported with file, line,
field and rule, and dump_scenario round-trips (binary included)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from presence_conformance.harness.adapter import Feature
from presence_conformance.harness.scenario import (
    ScenarioError,
    dump_scenario,
    load_scenario,
    load_scenarios,
    scenario_from_dict,
)
from support import ROOT

GOOD = """\
name: good
description: Everything the format has.
requirements: [enter.adds-member, get.filter-client-id]
requires: [history]
clients:
  alice: {}
  bob: {client_id: bob}
  anon: {client_id: null}
  reader: {client_id: carol, capability: {"*": [subscribe, history]}}
  late: {client_id: dave, connect: later}
channels: [room, other]
steps:
  - subscribe: {client: bob, channel: room, listener: L1}
  - subscribe: {client: bob, channel: room, listener: L2, actions: [enter, leave]}
  - enter: {client: alice, channel: room, data: {mood: happy}, id: e1}
  - update: {client: alice, channel: room, data: !!binary AAEC}
  - update: {client: alice, channel: room, data: {$binary: AAEC}}
  - leave: {client: alice, channel: room, id: e2}
  - get: {client: bob, channel: room, client_id: alice, connection_id: {of: alice},
          wait_for_sync: true, expect: []}
  - history: {client: bob, channel: room, limit: 2, direction: forwards,
              start: {at: e1}, end: {at: e2, offset: 5}, pages: all, expect_count: 2}
  - enter: {client: anon, channel: room, expect_error: [91000, 40012]}
  - unsubscribe: {client: bob, channel: room, listener: L2, actions: leave}
  - unsubscribe: {client: bob, channel: room}
  - sync_complete: {client: bob, channel: room, expect: true}
  - concurrently:
      - enter: {client: alice, channel: room}
      - enter: {client: bob, channel: room}
  - drop: {client: alice}
  - close: {client: bob}
  - connect: {client: late}
  - connect: {client: alice}
  - expect_events: {listener: L1, events: [{action: [enter, update], client: alice}]}
"""


def write(tmp_path: Path, text: str, name: str = "area/case.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_good_file_loads(tmp_path: Path) -> None:
    s = load_scenario(write(tmp_path, GOOD), tmp_path)
    assert s.case_id == "area/case"
    assert s.name == "good"
    assert s.requirements == ["enter.adds-member", "get.filter-client-id"]
    assert s.clients["alice"].client_id == "alice"  # defaults to the name
    assert s.clients["anon"].client_id is None
    assert s.clients["late"].connect == "later"
    assert s.steps[3].args["data"] == b"\x00\x01\x02"
    assert s.steps[4].args["data"] == b"\x00\x01\x02"
    assert s.steps[1].args == {
        "listener": "L2",
        "actions": ["enter", "leave"],
        "actions_list": True,
    }
    assert s.steps[7].args["end"] == {"at": "e2", "offset": 5}
    assert s.steps[8].expect_error == (91000, 40012)
    assert s.steps[12].kind == "concurrently" and len(s.steps[12].steps) == 2
    assert s.steps[12].steps[1].path == "steps[12].concurrently[1]"
    assert s.steps[2].line == 15
    assert s.source == tmp_path / "area/case.yaml"
    assert s.needed_features() >= {
        Feature.HISTORY,
        Feature.BINARY_DATA,
        Feature.ABRUPT_DISCONNECT,
        Feature.CAPABILITIES,
        Feature.ANONYMOUS_CLIENTS,
        Feature.MULTIPLE_CONNECTIONS,
        Feature.SYNC_COMPLETE,
        Feature.UNSUBSCRIBE_BY_ACTION,
        Feature.SUBSCRIBE_ACTION_LIST,
    }


def test_load_scenarios_sorted(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "b/two.yaml")
    write(tmp_path, GOOD, "a/one.yaml")
    assert [s.case_id for s in load_scenarios(tmp_path)] == ["a/one", "b/two"]


def test_shipped_scenarios_load() -> None:
    scenarios = load_scenarios(ROOT / "scenarios")
    assert scenarios, "no scenario files under scenarios/"
    assert all("/" in s.case_id for s in scenarios)


def base(steps: str, clients: str = "alice: {}\n  bob: {}", extra: str = "") -> str:
    return (
        f"requirements: [enter.adds-member]\n{extra}clients:\n  {clients}\n"
        f"channels: [room, other]\nsteps:\n{steps}"
    )


# (file text, line, field, rule)
MALFORMED = {
    "yaml syntax": ("requirements: [enter.adds-member\nclients: {}\n", 2, "(root)", "yaml-syntax"),
    "empty file": ("", 1, "(root)", "yaml-syntax"),
    "duplicate key": (
        base("  - enter: {client: alice, channel: room, channel: other}\n"),
        7,
        "steps[0].enter.channel",
        "duplicate-key",
    ),
    "missing field": (base("  - enter: {client: alice}\n"), 7, "steps[0].enter", "required"),
    "unknown field": (
        base("  - enter: {client: alice, channel: room, dat: 1}\n"),
        7,
        "steps[0].enter.dat",
        "unknown-field",
    ),
    "unknown step kind": (
        base("  - entr: {client: alice, channel: room}\n"),
        7,
        "steps[0].entr",
        "step-kind",
    ),
    "two kinds in a step": (
        base(
            "  - enter: {client: alice, channel: room}\n    leave: {client: alice, channel: room}\n"
        ),
        7,
        "steps[0]",
        "step-kind",
    ),
    "wrong type": (
        base("  - get: {client: alice, channel: room, wait_for_sync: maybe}\n"),
        7,
        "steps[0].get.wait_for_sync",
        "type",
    ),
    "top-level unknown": (
        base("  - enter: {client: alice, channel: room}\n", extra="colour: 1\n"),
        2,
        "colour",
        "unknown-field",
    ),
    "bad base64": (
        base("  - enter: {client: alice, channel: room, data: {$binary: '%%%'}}\n"),
        7,
        "steps[0].enter.data.$binary",
        "binary",
    ),
    "bad !!binary": (
        base("  - enter:\n      client: alice\n      channel: room\n      data: !!binary '%%%'\n"),
        10,
        "steps[0].enter.data",
        "binary",
    ),
    "unknown tag": (
        base("  - enter: {client: alice, channel: room, data: !color red}\n"),
        7,
        "steps[0].enter.data",
        "yaml-value",
    ),
    "unknown client": (
        base("  - enter: {client: zoe, channel: room}\n"),
        7,
        "steps[0].enter.client",
        "unknown-client",
    ),
    "unknown channel": (
        base("  - enter: {client: alice, channel: hall}\n"),
        7,
        "steps[0].enter.channel",
        "unknown-channel",
    ),
    "unknown listener": (
        base("  - unsubscribe: {client: alice, channel: room, listener: L9}\n"),
        7,
        "steps[0].unsubscribe.listener",
        "unknown-listener",
    ),
    "listener on two channels": (
        base(
            "  - subscribe: {client: alice, channel: room, listener: L}\n"
            "  - subscribe: {client: alice, channel: other, "
            "listener: L}\n"
        ),
        8,
        "steps[1].subscribe.listener",
        "listener-binding",
    ),
    "unknown step id": (
        base("  - history: {client: alice, channel: room, start: {at: nope}}\n"),
        7,
        "steps[0].history.start.at",
        "unknown-step-id",
    ),
    "step id of a read": (
        base(
            "  - get: {client: alice, channel: room, id: g}\n"
            "  - history: {client: alice, channel: room, end: {at: g}}\n"
        ),
        8,
        "steps[1].history.end.at",
        "step-id-not-event",
    ),
    "duplicate step id": (
        base(
            "  - enter: {client: alice, channel: room, id: a}\n"
            "  - leave: {client: alice, channel: room, id: a}\n"
        ),
        8,
        "steps[1].leave.id",
        "duplicate-step-id",
    ),
    "same member concurrently (a get racing an enter)": (
        base(
            "  - concurrently:\n"
            "      - enter: {client: alice, channel: room}\n"
            "      - get: {client: alice, channel: room}\n"
        ),
        9,
        "steps[0].concurrently[1].get",
        "concurrent-same-member",
    ),
    "nested block": (
        base(
            "  - concurrently:\n"
            "      - enter: {client: alice, channel: room}\n"
            "      - concurrently:\n"
            "          - enter: {client: bob, channel: room}\n"
            "          - enter: {client: bob, channel: other}\n"
        ),
        9,
        "steps[0].concurrently[1].concurrently",
        "concurrent-nested",
    ),
    "read racing a write": (
        base(
            "  - concurrently:\n"
            "      - enter: {client: alice, channel: room}\n"
            "      - get: {client: bob, channel: room}\n"
        ),
        9,
        "steps[0].concurrently[1].get",
        "concurrent-read-write",
    ),
    "drop in a block": (
        base(
            "  - concurrently:\n"
            "      - enter: {client: alice, channel: room}\n"
            "      - drop: {client: bob}\n"
        ),
        9,
        "steps[0].concurrently[1].drop",
        "concurrent-kind",
    ),
    "unknown requirement": (
        base("  - enter: {client: alice, channel: room}\n").replace(
            "enter.adds-member", "enter.adds-membr"
        ),
        1,
        "requirements[0]",
        "unknown-requirement",
    ),
    "bad requirement id": (
        base("  - enter: {client: alice, channel: room}\n").replace(
            "enter.adds-member", "Enter Adds"
        ),
        1,
        "requirements[0]",
        "pattern",
    ),
    "unknown feature": (
        base("  - enter: {client: alice, channel: room}\n", extra="requires: [histroy]\n"),
        2,
        "requires[0]",
        "unknown-feature",
    ),
    "not connected": (
        base(
            "  - enter: {client: bob, channel: room}\n",
            clients="alice: {}\n  bob: {connect: later}",
        ),
        7,
        "steps[0].enter.client",
        "client-not-connected",
    ),
    "used after drop": (
        base("  - drop: {client: alice}\n  - enter: {client: alice, channel: room}\n"),
        8,
        "steps[1].enter.client",
        "client-not-connected",
    ),
    "connect twice": (
        base("  - connect: {client: alice}\n"),
        7,
        "steps[0].connect.client",
        "client-connected",
    ),
    "invalid action": (
        base("  - subscribe: {client: alice, channel: room, listener: L, actions: entr}\n"),
        7,
        "steps[0].subscribe.actions",
        "invalid-action",
    ),
    "date as data": (
        base("  - enter: {client: alice, channel: room, data: 2024-01-01}\n"),
        7,
        "steps[0].enter.data",
        "data-type",
    ),
    "non-string key": (
        base("  - enter: {client: alice, channel: room, data: {1: x}}\n"),
        7,
        "steps[0].enter.data",
        "yaml-key",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_reported(tmp_path: Path, case: str) -> None:
    text, line, field, rule = MALFORMED[case]
    path = write(tmp_path, text, "get/x.yaml")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, tmp_path)
    err = info.value
    assert (err.file, err.line, err.field, err.rule) == (str(path), line, field, rule), str(err)
    assert str(err).startswith(f"{path}:{line}: {field}: ")
    assert str(err).splitlines()[0].endswith(f"(rule: {rule})")


def test_unknown_requirement_suggests(tmp_path: Path) -> None:
    text, *_ = MALFORMED["unknown requirement"]
    with pytest.raises(ScenarioError, match=r"did you mean 'enter\.adds-member'"):
        load_scenario(write(tmp_path, text), tmp_path)


def test_invalid_action_allowed_with_expect_error(tmp_path: Path) -> None:
    text = base(
        "  - subscribe: {client: alice, channel: room, listener: L, actions: sideways,\n"
        "                expect_error: 40003}\n"
    )
    s = load_scenario(write(tmp_path, text), tmp_path)
    assert Feature.ARGUMENT_VALIDATION in s.needed_features()


def test_load_scenarios_collects_every_file(tmp_path: Path) -> None:
    write(tmp_path, MALFORMED["unknown client"][0], "a/one.yaml")
    write(tmp_path, MALFORMED["unknown channel"][0], "b/two.yaml")
    with pytest.raises(ScenarioError) as info:
        load_scenarios(tmp_path)
    assert [p.rule for p in info.value.problems] == ["unknown-client", "unknown-channel"]


def test_dict_without_lines() -> None:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(
            {
                "requirements": ["enter.adds-member"],
                "clients": {"a": {}},
                "channels": ["room"],
                "steps": [{"enter": {"client": "b", "channel": "room"}}],
            }
        )
    assert str(info.value) == (
        "<inline>: steps[0].enter.client: unknown client 'b' (declared: a) (rule: unknown-client)"
    )


def test_round_trip(tmp_path: Path) -> None:
    original = load_scenario(write(tmp_path, GOOD), tmp_path)
    out = dump_scenario(original, tmp_path / "copy" / "case.yaml")
    text = out.read_text(encoding="utf-8")
    assert "!!binary" in text
    again = load_scenario(out, tmp_path)
    assert again.to_dict() == original.to_dict()
    assert again.steps[3].args["data"] == b"\x00\x01\x02"
    assert [s.kind for s in again.iter_steps()] == [s.kind for s in original.iter_steps()]


def test_round_trip_of_a_dict_with_awkward_data(tmp_path: Path) -> None:
    data = {
        "requirements": ["data.binary"],
        "clients": {"a": {"client_id": "a"}},
        "channels": ["room"],
        "steps": [
            {"enter": {"client": "a", "channel": "room", "data": bytes(range(256))}},
            {"update": {"client": "a", "channel": "room", "data": "yes"}},
            {"update": {"client": "a", "channel": "room", "data": "12"}},
            {"update": {"client": "a", "channel": "room", "data": "multi\nline\n"}},
            {"update": {"client": "a", "channel": "room", "data": "😀 ünï"}},
            {"update": {"client": "a", "channel": "room", "data": [1, {"x": None}]}},
            {"update": {"client": "a", "channel": "room", "data": ""}},
        ],
        "meta": {"seed": 42},
    }
    path = dump_scenario(data, tmp_path / "generated" / "x.yaml")
    loaded = load_scenario(path, tmp_path)
    assert [s.args["data"] for s in loaded.steps] == [
        bytes(range(256)),
        "yes",
        "12",
        "multi\nline\n",
        "😀 ünï",
        [1, {"x": None}],
        "",
    ]
    assert loaded.meta == {"seed": 42}
    assert loaded.case_id == "generated/x"
