"""The requirement catalogue `spec/requirements.yaml`: its shape, its IDs, and its checks."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from presence_conformance.spec import (
    LEVELS,
    Catalogue,
    CatalogueError,
    Requirement,
    load_requirements,
)

from presence_conformance import spec

# Every ID the design card fixes, with its level. IDs are final: this list only ever grows.
EXPECTED: dict[str, str] = {
    "enter.adds-member": "MUST",
    "enter.data": "MUST",
    "enter.requires-client-id": "MUST",
    "enter.requires-presence-capability": "MUST",
    "enter.implicit-attach": "MUST",
    "enter.event-emitted": "MUST",
    "enter.when-present": "INFO",
    "enter.echoed-to-own-connection": "SHOULD",
    "update.changes-data": "MUST",
    "update.event-emitted": "MUST",
    "update.when-not-present-enters": "MUST",
    "update.when-not-present-action": "INFO",
    "update.null-data": "MUST",
    "leave.removes-member": "MUST",
    "leave.event-emitted": "MUST",
    "leave.data-given": "MUST",
    "leave.data-defaults-to-member-data": "SHOULD",
    "leave.when-not-present": "MUST",
    "get.returns-members": "MUST",
    "get.action-present": "MUST",
    "get.filter-client-id": "MUST",
    "get.filter-connection-id": "MUST",
    "get.filter-both": "MUST",
    "get.wait-for-sync-default": "MUST",
    "get.wait-for-sync-false": "MUST",
    "get.implicit-attach": "MUST",
    "get.empty-channel": "MUST",
    "subscribe.all-actions": "MUST",
    "subscribe.single-action": "MUST",
    "subscribe.action-list": "MUST",
    "subscribe.implicit-attach": "MUST",
    "subscribe.invalid-action": "SHOULD",
    "subscribe.multiple-listeners": "MUST",
    "unsubscribe.all": "MUST",
    "unsubscribe.listener": "MUST",
    "unsubscribe.action-listener": "MUST",
    "unsubscribe.action": "SHOULD",
    "unsubscribe.all-actions-listener-with-action": "INFO",
    "unsubscribe.others-unaffected": "MUST",
    "history.returns-events": "MUST",
    "history.no-present": "SHOULD",
    "history.direction-default-backwards": "MUST",
    "history.direction-forwards": "MUST",
    "history.direction-invalid": "SHOULD",
    "history.limit-default-100": "MUST",
    "history.limit-max-1000": "SHOULD",
    "history.limit-positive": "SHOULD",
    "history.start-end-inclusive": "MUST",
    "history.start-after-end": "MUST",
    "history.pagination": "MUST",
    "history.per-member-order": "MUST",
    "history.includes-synthesized-leave": "SHOULD",
    "sync.present-on-attach": "MUST",
    "sync.late-joiner-get": "MUST",
    "sync.complete-after-attach": "MUST",
    "sync.complete-before-attach": "INFO",
    "sync.no-duplicate-present": "MUST",
    "sync.converges": "MUST",
    "message.action": "MUST",
    "message.client-id": "MUST",
    "message.connection-id": "MUST",
    "message.data": "MUST",
    "message.timestamp": "MUST",
    "message.id": "MUST",
    "message.id-format": "SHOULD",
    "message.schema": "MUST",
    "data.string": "MUST",
    "data.json-object": "MUST",
    "data.binary": "MUST",
    "data.json-array": "SHOULD",
    "data.empty": "MUST",
    "data.unicode": "MUST",
    "data.unsupported-type": "SHOULD",
    "data.size-limit": "SHOULD",
    "member.key": "MUST",
    "member.independent-leave": "MUST",
    "order.per-member": "MUST",
    "order.exactly-once": "MUST",
    "order.channel-isolation": "MUST",
    "disconnect.leave-synthesized": "MUST",
    "disconnect.synthesized-leave-id": "SHOULD",
    "disconnect.grace-period": "INFO",
    "disconnect.close-leaves": "MUST",
    "disconnect.close-leaves-promptly": "SHOULD",
    "disconnect.reconnect-new-member": "MUST",
    "error.state-unchanged": "MUST",
    "error.has-code": "SHOULD",
    "error.capability-denied": "MUST",
    "wire.enter-no-client-id": "MUST",
    "wire.update-no-client-id": "MUST",
    "wire.leave-no-client-id": "MUST",
    "wire.msg-serial-sequence": "MUST",
    "wire.presence-after-attach": "MUST",
    "wire.json-frames-valid": "MUST",
}

# Requirements about errors, with the Ably codes the reference model answers with first.
ERROR_CODES: dict[str, set[int]] = {
    "enter.requires-client-id": {91000, 40012},
    "enter.requires-presence-capability": {40160},
    "subscribe.invalid-action": {40003, 40000},
    "history.direction-invalid": {40003, 40000},
    "history.limit-max-1000": {40003, 40000},
    "history.limit-positive": {40003, 40000},
    "history.start-after-end": {40003, 40000},
    "data.unsupported-type": {40013},
    "data.size-limit": {40009},
}

AREAS = [
    "enter",
    "update",
    "leave",
    "get",
    "subscribe",
    "unsubscribe",
    "history",
    "sync",
    "message",
    "data",
    "member",
    "order",
    "disconnect",
    "error",
    "wire",
    "channel",
    "client",
]

ID_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*\.[a-z0-9]+(-[a-z0-9]+)*$")
CATALOGUE_FILE = Path(spec.__file__).parent / "requirements.yaml"


@pytest.fixture
def raw() -> dict[str, Any]:
    """The catalogue file as a plain document, to break in tests."""
    return yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8"))


# -- the shipped catalogue ---------------------------------------------------------------------


def test_loads_and_is_cached(catalogue: Catalogue) -> None:
    assert load_requirements() is catalogue
    assert catalogue.version == 1
    assert len(catalogue) == len(catalogue.requirements) > 0


def test_file_passes_every_check(raw: dict[str, Any]) -> None:
    assert spec.check_catalogue(raw) == []


def test_areas_in_report_order(catalogue: Catalogue) -> None:
    assert list(catalogue.areas) == AREAS
    assert all(title and title[0].isupper() for title in catalogue.areas.values())
    # every area is used, and the file lists the requirements grouped by area in area order
    order = [r.area for r in catalogue.requirements]
    assert [a for i, a in enumerate(order) if i == 0 or order[i - 1] != a] == AREAS


def test_every_expected_id_present_with_its_level(catalogue: Catalogue) -> None:
    missing = sorted(set(EXPECTED) - set(catalogue.ids()))
    assert not missing, f"requirement IDs missing from the catalogue: {missing}"
    wrong = {
        i: (catalogue.by_id(i).level, level)
        for i, level in EXPECTED.items()
        if catalogue.by_id(i).level != level
    }
    assert not wrong, f"levels differ (found, expected): {wrong}"


def test_entries_complete(catalogue: Catalogue) -> None:
    for r in catalogue:
        assert r.id and r.level and r.text, r
        assert r.level in LEVELS, r.id
        assert r.area == r.id.split(".")[0] and r.area in catalogue.areas, r.id
        assert ID_RE.match(r.id), r.id
        assert r.seed is not None or r.ably, f"{r.id}: cites nothing"
        assert isinstance(r.ably, tuple) and isinstance(r.codes, tuple), r.id


def test_ids_unique(raw: dict[str, Any]) -> None:
    ids = [e["id"] for e in raw["requirements"]]
    assert len(ids) == len(set(ids))


def test_texts_are_one_sentence(catalogue: Catalogue) -> None:
    for r in catalogue:
        assert r.text.endswith("."), r.id
        assert "\n" not in r.text, r.id
        assert not re.search(r"[.!?]\s+\S", r.text[:-1]), f"{r.id}: more than one sentence"
        assert r.text[0].isupper() or r.text.split()[0].endswith("()"), r.id


def test_error_requirements_have_codes(catalogue: Catalogue) -> None:
    for rid, codes in ERROR_CODES.items():
        assert catalogue.by_id(rid).codes, f"{rid}: no accepted error codes"
        assert codes <= set(catalogue.by_id(rid).codes), rid


def test_codes_match_the_reference_errors(catalogue: Catalogue) -> None:
    from presence_conformance.reference_impl import errors

    known = {v for k, v in vars(errors).items() if k.isupper() and isinstance(v, int)}
    for r in catalogue:
        assert set(r.codes) <= known, (
            f"{r.id}: codes {r.codes} not all in presence_conformance.reference_impl.errors"
        )


def test_open_behaviours_are_never_must(catalogue: Catalogue) -> None:
    # Where the specification leaves behaviour open, a correct implementation must not fail.
    for rid in (
        "enter.when-present",
        "update.when-not-present-action",
        "unsubscribe.all-actions-listener-with-action",
        "sync.complete-before-attach",
        "disconnect.grace-period",
    ):
        assert catalogue.by_id(rid).level == "INFO", rid


def test_seed_references_name_seed_sections(catalogue: Catalogue) -> None:
    for r in catalogue:
        for ref in r.seed_sections:
            head = re.split(r"[.:]", ref, maxsplit=1)[0]
            assert head in spec.SEED_SECTIONS, f"{r.id}: {ref!r}"


def test_sources_string(catalogue: Catalogue) -> None:
    r = catalogue.by_id("enter.data")
    assert r.sources == "seed: enter.data; Ably: RTP8e"


# -- the Catalogue API ---------------------------------------------------------------------------


def test_by_id_and_contains(catalogue: Catalogue) -> None:
    r = catalogue.by_id("enter.adds-member")
    assert isinstance(r, Requirement)
    assert r.level == "MUST" and r.ably[0] == "RTP8a" and r.seed == "enter"
    assert "enter.adds-member" in catalogue and r in catalogue
    assert "enter.nope" not in catalogue and 5 not in catalogue
    assert dataclasses.replace(r, level="INFO") not in catalogue


def test_by_id_unknown_is_helpful(catalogue: Catalogue) -> None:
    with pytest.raises(KeyError, match=r"enter\.add-member.*did you mean 'enter\.adds-member'"):
        catalogue.by_id("enter.add-member")
    with pytest.raises(KeyError, match="known areas: enter, update"):
        catalogue.by_id("nothing.like-this")


def test_requirement_is_frozen(catalogue: Catalogue) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        catalogue.by_id("enter.data").level = "INFO"  # type: ignore[misc]


def test_in_area_and_at_level(catalogue: Catalogue) -> None:
    assert catalogue.in_area("wire")[0].id == "wire.enter-no-client-id"
    assert sum(len(catalogue.at_level(level)) for level in LEVELS) == len(catalogue)


def test_explicit_path_is_read_afresh(tmp_path: Path, raw: dict[str, Any]) -> None:
    path = tmp_path / "requirements.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    first = load_requirements(path)
    assert first.ids() == load_requirements().ids()
    raw["requirements"] = raw["requirements"][:1]
    raw["areas"] = {"enter": raw["areas"]["enter"]}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_requirements(str(path)).ids() == ["enter.adds-member"]


# -- broken catalogues are refused, naming the entry and the field ------------------------------


def _entry(raw: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(e for e in raw["requirements"] if e["id"] == rid)


def _set(rid: str, field: str, value: Any):
    def mutate(raw: dict[str, Any]) -> None:
        target = _entry(raw, rid)
        *parents, last = field.split(".")
        for p in parents:
            target = target[p]
        target[last] = value

    return mutate


def _delete(rid: str, field: str):
    def mutate(raw: dict[str, Any]) -> None:
        target = _entry(raw, rid)
        *parents, last = field.split(".")
        for p in parents:
            target = target[p]
        del target[last]

    return mutate


def _duplicate(raw: dict[str, Any]) -> None:
    raw["requirements"].append(copy.deepcopy(_entry(raw, "get.filter-both")))


def _unused_area(raw: dict[str, Any]) -> None:
    raw["areas"]["presence-extras"] = "Nothing here"


BROKEN = [
    ("missing level", _delete("enter.data", "level"), ["(enter.data)", "level", "missing"]),
    (
        "bad level",
        _set("leave.data-given", "level", "MAY"),
        ["(leave.data-given)", "level", "'MAY'"],
    ),
    ("missing text", _delete("get.filter-both", "text"), ["(get.filter-both)", "text"]),
    (
        "two sentences",
        _set("sync.converges", "text", "It converges. Then it stays."),
        ["(sync.converges)", "text", "one sentence"],
    ),
    (
        "no period",
        _set("sync.converges", "text", "It converges"),
        ["(sync.converges)", "text", "period"],
    ),
    (
        "missing sources",
        _delete("history.pagination", "sources"),
        ["(history.pagination)", "sources", "missing"],
    ),
    (
        "cites nothing",
        _set("order.per-member", "sources", {"seed": None, "ably": []}),
        ["(order.per-member)", "sources", "cites nothing"],
    ),
    (
        "bad ably point",
        _set("enter.data", "sources.ably", ["RTP8e", "rtp-8"]),
        ["(enter.data)", "sources.ably", "'rtp-8'"],
    ),
    (
        "ably not a list",
        _set("enter.data", "sources.ably", "RTP8e"),
        ["(enter.data)", "sources.ably", "list"],
    ),
    (
        "unknown seed section",
        _set("enter.data", "sources.seed", "entrance.data"),
        ["(enter.data)", "sources.seed", "'entrance'"],
    ),
    (
        "unknown seed field",
        _set("enter.data", "sources.seed", "get.limit"),
        ["(enter.data)", "sources.seed", "'limit'"],
    ),
    (
        "missing seed key",
        _delete("enter.data", "sources.seed"),
        ["(enter.data)", "sources.seed", "missing"],
    ),
    (
        "codes not ints",
        _set("data.size-limit", "codes", ["40009"]),
        ["(data.size-limit)", "codes", "'40009'"],
    ),
    ("codes empty", _set("data.size-limit", "codes", []), ["(data.size-limit)", "codes"]),
    ("unknown field", _set("member.key", "levle", "MUST"), ["(member.key)", "levle", "unknown"]),
    (
        "bad id form",
        _set("member.key", "id", "member.Key_1"),
        ["(member.Key_1)", "id", "area.kebab-slug"],
    ),
    ("unknown area", _set("member.key", "id", "members.key"), ["(members.key)", "id", "'members'"]),
    ("duplicate id", _duplicate, ["(get.filter-both)", "id", "duplicate"]),
    ("unused area", _unused_area, ["areas.presence-extras", "no requirement"]),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [(m, e) for _, m, e in BROKEN], ids=[name for name, _, _ in BROKEN]
)
def test_broken_catalogue_is_refused(
    tmp_path: Path, raw: dict[str, Any], mutate: Any, expected: list[str]
) -> None:
    mutate(raw)
    path = tmp_path / "requirements.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    with pytest.raises(CatalogueError) as info:
        load_requirements(path)
    problems = info.value.problems
    assert any(all(part in p for part in expected) for p in problems), problems
    assert str(path) in str(info.value)


def test_broken_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "requirements.yaml"
    path.write_text("version: 1\nareas: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="YAML"):
        load_requirements(path)


@pytest.mark.parametrize("document", [None, [], {"version": 2, "areas": {}, "requirements": []}])
def test_broken_top_level_is_refused(document: Any) -> None:
    problems = spec.check_catalogue(document)
    assert problems
    if isinstance(document, dict):
        assert any(p.startswith("version:") for p in problems)
        assert any(p.startswith("requirements:") for p in problems)
