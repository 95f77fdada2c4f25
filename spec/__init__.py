"""The specification the harness checks against: the requirement catalogue and the JSON Schemas.

- `requirements.yaml` lists every requirement with a stable ID (`area.kebab-slug`), a level
  (MUST, SHOULD, INFO), one testable sentence, and its sources: the seed's section
  (`presence-api.md`, shipped beside the catalogue) and the Ably specification points (RTP*, RSP*, TP*, TR*, ...).
  `load_requirements()` parses and checks it and returns a `Catalogue`.
- `schemas/*.json` are JSON Schema 2020-12 documents for the API-form `PresenceMessage`,
  the Ably wire forms (`ProtocolMessage`, wire `PresenceMessage`), `get`/`history` options,
  history pages and `ErrorInfo`. Each has an `$id` under `SCHEMA_BASE`, so schemas `$ref` each
  other by `$id` (or by file name, relative to it). `validate(name, instance)` returns readable
  messages that start with the field path, e.g. `"clientId: 5 is not of type 'string'"`.

Everything is read through `importlib.resources`, so it works from an installed wheel too.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = [
    "LEVELS",
    "SCHEMA_BASE",
    "SEED_SECTIONS",
    "Catalogue",
    "CatalogueError",
    "Requirement",
    "check_catalogue",
    "load_requirements",
    "schema",
    "schema_names",
    "validate",
    "validator",
]

LEVELS = ("MUST", "SHOULD", "INFO")
"""Requirement levels, strongest first."""

SCHEMA_BASE = "https://presence-conformance.dev/schemas/"
"""Every schema's `$id` is this base followed by its file name."""

SEED_SECTIONS: dict[str, frozenset[str]] = {
    "Presence Object": frozenset(),
    "syncComplete": frozenset(),
    "enter": frozenset({"data", "callback"}),
    "update": frozenset({"data", "callback"}),
    "leave": frozenset({"data", "callback"}),
    "get": frozenset({"clientId", "connectionId", "waitForSync"}),
    "subscribe": frozenset({"action", "listener"}),
    "unsubscribe": frozenset({"action", "listener"}),
    "history": frozenset({"start", "end", "limit", "direction"}),
    "PresenceMessage": frozenset({"action", "clientId", "connectionId", "data", "timestamp", "id"}),
    "Presence Actions": frozenset({"enter", "leave", "update", "present"}),
}
"""The seed's sections and, for each, the parameters, fields or actions it names.

A `sources.seed` value is one or more references joined by `"; "`. Each reference is a section
(`get`), a section and one of its names (`get.waitForSync`, `PresenceMessage.id`,
`Presence Actions: present`), or a section and a line quoted from it
(`enter: Client must have a clientId configured`).
"""

_ID_RE = re.compile(r"^(?P<area>[a-z][a-z0-9]*(?:-[a-z0-9]+)*)\.[a-z0-9]+(?:-[a-z0-9]+)*$")
_AREA_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_ABLY_POINT_RE = re.compile(r"^(?:RTP|RSP|TP|TR|TO|RTN|RTL|RSL|RSA|CD|TM|TI|TK|TD)\d+[a-z0-9]*$")
_SENTENCE_BREAK_RE = re.compile(r"[.!?]\s+\S")
_ENTRY_KEYS = {"id", "level", "text", "sources", "codes"}
_SOURCE_KEYS = {"seed", "ably"}
_TOP_KEYS = {"version", "areas", "requirements"}


# -- requirements ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement of the catalogue.

    `seed` is the seed section(s) it comes from (None where the seed is silent), `ably` the Ably
    specification points, `codes` the Ably error codes an implementation may answer with (empty
    for requirements that are not about errors).
    """

    id: str
    area: str
    level: str
    text: str
    seed: str | None
    ably: tuple[str, ...]
    codes: tuple[int, ...] = ()

    @property
    def seed_sections(self) -> tuple[str, ...]:
        """The seed references, split on `"; "`."""
        return tuple(self.seed.split("; ")) if self.seed else ()

    @property
    def sources(self) -> str:
        """A one-line citation, e.g. `seed: enter.data; Ably: RTP8e`."""
        parts = []
        if self.seed:
            parts.append(f"seed: {self.seed}")
        if self.ably:
            parts.append("Ably: " + ", ".join(self.ably))
        return "; ".join(parts)


class CatalogueError(ValueError):
    """The catalogue file is malformed; `problems` lists each one, naming the entry and field."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(
            f"{path}: {len(problems)} problem(s) in the requirement catalogue:\n  "
            + "\n  ".join(problems)
        )


class Catalogue:
    """The requirements in file order, with their areas (area id -> title, in report order)."""

    def __init__(
        self,
        requirements: list[Requirement],
        areas: dict[str, str],
        version: int = 1,
        path: str = "",
    ) -> None:
        self.requirements = requirements
        self.areas = areas
        self.version = version
        self.path = path
        self._by_id = {r.id: r for r in requirements}

    def by_id(self, requirement_id: str) -> Requirement:
        """The requirement with this ID; a `KeyError` names close matches when there is none."""
        try:
            return self._by_id[requirement_id]
        except (KeyError, TypeError):
            pass
        hint = ""
        if isinstance(requirement_id, str):
            close = difflib.get_close_matches(requirement_id, self._by_id, n=3, cutoff=0.6)
            if close:
                hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?"
            else:
                area = requirement_id.partition(".")[0]
                if area in self.areas:
                    hint = f"; area {area!r} has: " + ", ".join(r.id for r in self.in_area(area))
                else:
                    hint = "; known areas: " + ", ".join(self.areas)
        raise KeyError(
            f"unknown requirement {requirement_id!r} in {self.path or 'the catalogue'}{hint}"
        )

    def in_area(self, area: str) -> list[Requirement]:
        """The requirements of one area, in file order."""
        return [r for r in self.requirements if r.area == area]

    def at_level(self, level: str) -> list[Requirement]:
        """The requirements of one level, in file order."""
        return [r for r in self.requirements if r.level == level]

    def ids(self) -> list[str]:
        return [r.id for r in self.requirements]

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Requirement):
            return self._by_id.get(item.id) == item
        return isinstance(item, str) and item in self._by_id

    def __iter__(self) -> Iterator[Requirement]:
        return iter(self.requirements)

    def __len__(self) -> int:
        return len(self.requirements)

    def __repr__(self) -> str:
        return f"Catalogue({len(self.requirements)} requirements, {len(self.areas)} areas)"


def _entry_name(index: int, entry: Any) -> str:
    if isinstance(entry, Mapping) and isinstance(entry.get("id"), str):
        return f"requirements[{index}] ({entry['id']})"
    return f"requirements[{index}]"


def _check_seed(seed: str) -> str | None:
    """None if every reference in `seed` names a seed section (and a name it has), else why not."""
    for ref in seed.split("; "):
        head, sep, rest = ref.partition(":")
        if sep:  # "Presence Actions: present" or a quoted line
            section, name = head, rest.strip()
            if not name:
                return f"{ref!r}: nothing after ':'"
            if section == "Presence Actions" and name not in SEED_SECTIONS[section]:
                return f"{ref!r}: {name!r} is not one of the seed's presence actions"
        else:
            section, dot, name = ref.partition(".")
            if dot and section in SEED_SECTIONS and name not in SEED_SECTIONS[section]:
                known = ", ".join(sorted(SEED_SECTIONS[section])) or "nothing"
                return f"{ref!r}: the seed's {section} section names {known}, not {name!r}"
        if section not in SEED_SECTIONS:
            return (
                f"{ref!r}: {section!r} is not a section of the seed (one of "
                + ", ".join(SEED_SECTIONS)
                + ")"
            )
    return None


def check_catalogue(raw: Any) -> list[str]:
    """Every problem of a parsed catalogue document, each naming the entry and the field.

    Checks: top-level keys and `version: 1`; areas (kebab-case ids, titles, each used); per entry:
    known keys, `id` of the form `area.kebab-slug` with a known area and unique, `level` in
    `LEVELS`, `text` one sentence ending with a period, `sources.seed` (null or seed sections,
    see `SEED_SECTIONS`) and `sources.ably` (Ably spec points) citing something between them,
    and optional `codes` (a non-empty list of distinct 5-digit Ably error codes).
    """
    problems: list[str] = []
    if not isinstance(raw, Mapping):
        return [
            f"(top level): expected a mapping with {', '.join(sorted(_TOP_KEYS))}, "
            f"got {type(raw).__name__}"
        ]
    for key in sorted(set(raw) - _TOP_KEYS, key=str):
        problems.append(f"{key}: unknown top-level key (expected {', '.join(sorted(_TOP_KEYS))})")
    if raw.get("version") != 1:
        problems.append(f"version: expected 1, got {raw.get('version')!r}")

    areas = raw.get("areas")
    if not isinstance(areas, Mapping) or not areas:
        problems.append("areas: expected a non-empty mapping of area id -> title")
        areas = {}
    for area, title in areas.items():
        if not isinstance(area, str) or not _AREA_RE.match(area):
            problems.append(f"areas.{area}: area id must be lower-case kebab-case")
        if not isinstance(title, str) or not title.strip():
            problems.append(f"areas.{area}: expected a non-empty title, got {title!r}")

    entries = raw.get("requirements")
    if not isinstance(entries, list) or not entries:
        problems.append("requirements: expected a non-empty list")
        entries = []
    seen: dict[str, int] = {}
    used_areas: set[str] = set()
    for index, entry in enumerate(entries):
        name = _entry_name(index, entry)
        if not isinstance(entry, Mapping):
            problems.append(f"{name}: expected a mapping, got {type(entry).__name__}")
            continue
        for key in sorted(set(entry) - _ENTRY_KEYS, key=str):
            problems.append(
                f"{name}: {key}: unknown field (expected one of {', '.join(sorted(_ENTRY_KEYS))})"
            )
        for key in ("id", "level", "text", "sources"):
            if key not in entry:
                problems.append(f"{name}: {key}: missing")

        rid = entry.get("id")
        if "id" in entry:
            match = _ID_RE.match(rid) if isinstance(rid, str) else None
            if match is None:
                problems.append(f"{name}: id: {rid!r} is not of the form area.kebab-slug")
            else:
                area = match["area"]
                used_areas.add(area)
                if area not in areas:
                    problems.append(f"{name}: id: area {area!r} is not declared under areas")
                if rid in seen:
                    problems.append(f"{name}: id: duplicate of requirements[{seen[rid]}]")
                else:
                    seen[match.string] = index

        level = entry.get("level")
        if "level" in entry and level not in LEVELS:
            problems.append(f"{name}: level: {level!r} is not one of {', '.join(LEVELS)}")

        text = entry.get("text")
        if "text" in entry:
            if not isinstance(text, str) or not text.strip():
                problems.append(f"{name}: text: expected a non-empty string")
            elif "\n" in text.strip():
                problems.append(f"{name}: text: must be one line")
            elif not text.strip().endswith("."):
                problems.append(f"{name}: text: must be one sentence ending with a period")
            elif _SENTENCE_BREAK_RE.search(text.strip()[:-1]):
                problems.append(f"{name}: text: must be one sentence (found a sentence break)")

        sources = entry.get("sources")
        if "sources" in entry:
            if not isinstance(sources, Mapping):
                problems.append(f"{name}: sources: expected a mapping with seed and ably")
            else:
                for key in sorted(set(sources) - _SOURCE_KEYS, key=str):
                    problems.append(f"{name}: sources.{key}: unknown field (expected seed, ably)")
                for key in sorted(_SOURCE_KEYS - set(sources)):
                    problems.append(f"{name}: sources.{key}: missing (use null or [] when none)")
                seed = sources.get("seed")
                if seed is not None:
                    if not isinstance(seed, str) or not seed.strip():
                        problems.append(f"{name}: sources.seed: expected a string or null")
                    elif (why := _check_seed(seed)) is not None:
                        problems.append(f"{name}: sources.seed: {why}")
                ably = sources.get("ably", [])
                if not isinstance(ably, list):
                    problems.append(f"{name}: sources.ably: expected a list of spec points")
                    ably = []
                for point in ably:
                    if not isinstance(point, str) or not _ABLY_POINT_RE.match(point):
                        problems.append(
                            f"{name}: sources.ably: {point!r} is not an Ably spec "
                            "point (e.g. RTP8a, RSP4b2, TP3h)"
                        )
                if len(set(map(str, ably))) != len(ably):
                    problems.append(f"{name}: sources.ably: duplicate points")
                if seed is None and not ably and not set(_SOURCE_KEYS) - set(sources):
                    problems.append(
                        f"{name}: sources: cites nothing (seed is null and ably is empty)"
                    )

        if "codes" in entry:
            codes = entry["codes"]
            if not isinstance(codes, list) or not codes:
                problems.append(f"{name}: codes: expected a non-empty list of Ably error codes")
            else:
                for code in codes:
                    if (
                        isinstance(code, bool)
                        or not isinstance(code, int)
                        or not (10000 <= code <= 99999)
                    ):
                        problems.append(
                            f"{name}: codes: {code!r} is not an Ably error code (a 5-digit integer)"
                        )
                if len(set(map(repr, codes))) != len(codes):
                    problems.append(f"{name}: codes: duplicate codes")

    for area in areas:
        if area not in used_areas:
            problems.append(f"areas.{area}: no requirement in this area")
    return problems


def _catalogue_from(raw: Mapping[str, Any], path: str) -> Catalogue:
    requirements = []
    for entry in raw["requirements"]:
        sources = entry["sources"]
        requirements.append(
            Requirement(
                id=entry["id"],
                area=entry["id"].partition(".")[0],
                level=entry["level"],
                text=entry["text"].strip(),
                seed=sources["seed"],
                ably=tuple(sources["ably"]),
                codes=tuple(entry.get("codes") or ()),
            )
        )
    return Catalogue(requirements, dict(raw["areas"]), raw["version"], path)


def _parse(text: str, path: str) -> Catalogue:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(path, [f"(YAML): {exc}"]) from None
    problems = check_catalogue(raw)
    if problems:
        raise CatalogueError(path, problems)
    return _catalogue_from(raw, path)


@functools.cache
def _default_catalogue() -> Catalogue:
    resource = resources.files(__name__) / "requirements.yaml"
    return _parse(resource.read_text(encoding="utf-8"), "spec/requirements.yaml")


def load_requirements(path: str | Path | None = None) -> Catalogue:
    """Load and check the requirement catalogue; raise `CatalogueError` listing every problem.

    Without `path`, the packaged `spec/requirements.yaml` (parsed once, then cached). With
    `path`, that file, read afresh on every call.
    """
    if path is None:
        return _default_catalogue()
    path = Path(path)
    return _parse(path.read_text(encoding="utf-8"), str(path))


# -- schemas -----------------------------------------------------------------------------------


def _schema_dir() -> Any:
    return resources.files(__name__) / "schemas"


@functools.cache
def _schemas() -> dict[str, dict]:
    out = {}
    for entry in sorted(_schema_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            out[entry.name[: -len(".json")]] = json.loads(entry.read_text(encoding="utf-8"))
    return out


def schema_names() -> list[str]:
    """The names of the packaged schemas (file names without `.json`), sorted."""
    return list(_schemas())


def schema(name: str) -> dict:
    """The schema `spec/schemas/<name>.json` (a copy: mutating it changes nothing here)."""
    try:
        return copy.deepcopy(_schemas()[name])
    except KeyError:
        raise KeyError(
            f"unknown schema {name!r}; known schemas: " + ", ".join(schema_names())
        ) from None


@functools.cache
def _registry() -> Registry:
    resources_ = []
    for name, contents in _schemas().items():
        uri = contents.get("$id") or f"{SCHEMA_BASE}{name}.json"
        resources_.append(
            (uri, Resource.from_contents(contents, default_specification=DRAFT202012))
        )
    return Registry().with_resources(resources_)


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """A cached Draft 2020-12 validator for schema `name`; `$ref`s resolve across all schemas."""
    return Draft202012Validator(schema(name), registry=_registry())


def _join(path: Any) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _format(error: ValidationError) -> list[tuple[list[Any], str]]:
    """(field path, message) pairs for one error; `required` and `additionalProperties` errors
    are reported on the missing or unexpected field itself."""
    if error.context:
        error = best_match([error])
    path = list(error.absolute_path)
    instance = error.instance
    required = error.validator_value
    if error.validator == "required" and isinstance(instance, Mapping):
        assert isinstance(required, list)  # `required` takes a list of property names
        missing = [p for p in required if p not in instance]
        return [([*path, p], "is a required property") for p in missing]
    schema = error.schema
    if (
        error.validator == "additionalProperties"
        and error.validator_value is False
        and isinstance(instance, Mapping)
        and isinstance(schema, Mapping)
    ):
        declared = schema.get("properties", {})
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        extra = [
            k for k in instance if k not in declared and not any(p.search(k) for p in patterns)
        ]
        if extra:
            return [([*path, k], "is not allowed here (unexpected property)") for k in extra]
    return [(path, error.message)]


def validate(name: str, instance: Any) -> list[str]:
    """Validate `instance` against schema `name`; [] when valid, else one message per problem.

    Each message starts with the path of the offending field (`clientId: ...`,
    `presence[0].action: ...`, `data.$binary: ...`; `(root)` for the document itself), and the
    messages are sorted by that path.
    """
    found: list[tuple[list[str], str]] = []
    for error in validator(name).iter_errors(instance):
        for path, message in _format(error):
            key = [f"{p:010d}" if isinstance(p, int) else str(p) for p in path]
            found.append((key, f"{_join(path) or '(root)'}: {message}"))
    found.sort()
    return list(dict.fromkeys(message for _, message in found))
