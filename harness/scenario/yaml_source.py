"""YAML for scenario files: a loader that remembers where every value came from, and a dumper.

`load_yaml(text)` parses with PyYAML's safe constructors (so `!!binary` gives `bytes`) but walks
the composed node tree itself, so that it can record the line of every mapping key, mapping,
sequence and scalar under its field path (`("steps", 3, "enter", "data")`). Duplicate keys and
non-string keys, which PyYAML would silently accept, are reported. `dump_yaml(obj)` writes block
YAML that `load_yaml` reads back to an equal object (`bytes` as `!!binary`).

Scenario and replay files are untrusted input, so reading one is bounded (each limit a
`YamlProblem` with rule `limit`): the nesting depth (`MAX_DEPTH`, checked on the event stream
before PyYAML's recursive composer runs), the number of values once aliases are expanded
(`MAX_VALUES`: a "billion laughs" file of a few hundred bytes is refused at once), and the
digits of an integer (`MAX_INT_DIGITS`). The file size is bounded by the loader
(`presence_conformance.harness.scenario.MAX_FILE_BYTES`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path = tuple[str | int, ...]

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_BINARY_TAG = "tag:yaml.org,2002:binary"
_INT_TAG = "tag:yaml.org,2002:int"

MAX_DEPTH = 64  # nested mappings and sequences
MAX_VALUES = 100_000  # mappings, sequences and scalars, aliases expanded
MAX_INT_DIGITS = 100  # characters of an integer (digits, sign, prefix, underscores)


@dataclass
class YamlProblem(Exception):
    """A file that is not YAML, or YAML the scenario format refuses (duplicate keys, ...)."""

    line: int | None
    path: Path
    message: str
    rule: str

    def __str__(self) -> str:
        return self.message


class _Builder:
    def __init__(self) -> None:
        self.loader = yaml.SafeLoader("")
        self.lines: dict[Path, int] = {}
        self.values = 0

    def build(self, node: Node, path: Path) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise YamlProblem(
                node.start_mark.line + 1,
                path,
                f"more than {MAX_VALUES} values once aliases are expanded (limit MAX_VALUES; "
                "an alias bomb?)",
                "limit",
            )
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            if node.tag != _MAP_TAG:
                raise YamlProblem(
                    node.start_mark.line + 1,
                    path,
                    f"unsupported YAML tag {node.tag!r} on a mapping",
                    "yaml-tag",
                )
            self.loader.flatten_mapping(node)  # `<<` merge keys
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                key = self._scalar(key_node, path)
                if not isinstance(key, str):
                    raise YamlProblem(
                        key_line,
                        path,
                        f"mapping key {key!r} is not a string (quote it)",
                        "yaml-key",
                    )
                if key in out:
                    raise YamlProblem(
                        key_line,
                        (*path, key),
                        f"duplicate key {key!r} (first on line "
                        f"{self.lines.get((*path, key), '?')})",
                        "duplicate-key",
                    )
                self.lines[(*path, key)] = key_line
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ_TAG:
                raise YamlProblem(
                    node.start_mark.line + 1,
                    path,
                    f"unsupported YAML tag {node.tag!r} on a sequence",
                    "yaml-tag",
                )
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: Node, path: Path) -> Any:
        if not isinstance(node, ScalarNode):
            raise YamlProblem(
                node.start_mark.line + 1, path, "a mapping key must be a scalar", "yaml-key"
            )
        if node.tag == _INT_TAG and len(node.value) > MAX_INT_DIGITS:
            raise YamlProblem(
                node.start_mark.line + 1,
                path,
                f"an integer of more than {MAX_INT_DIGITS} digits (limit MAX_INT_DIGITS)",
                "limit",
            )
        if node.tag == _BINARY_TAG:  # PyYAML skips characters that are not base64
            try:
                base64.b64decode("".join(node.value.split()), validate=True)
            except (binascii.Error, ValueError):
                raise YamlProblem(
                    node.start_mark.line + 1, path, "!!binary: not valid base64", "binary"
                ) from None
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise YamlProblem(
                node.start_mark.line + 1, path, f"cannot read value: {problem}", "yaml-value"
            ) from None
        except (ValueError, OverflowError) as exc:  # e.g. a date like 2001-13-45
            raise YamlProblem(
                node.start_mark.line + 1, path, f"cannot read value: {exc}", "yaml-value"
            ) from None


def load_yaml(text: str) -> tuple[Any, dict[Path, int]]:
    """Parse one YAML document; return the value and the line (1-based) of every field path."""
    try:
        _check_depth(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlProblem(
            mark.line + 1 if mark else None, (), f"not valid YAML: {problem}", "yaml-syntax"
        ) from None
    if node is None:
        raise YamlProblem(1, (), "the file is empty", "yaml-syntax")
    builder = _Builder()
    value = builder.build(node, ())
    return value, builder.lines


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, reading the (iterative) event stream: PyYAML's
    composer recurses once per level, so a file nested 100k deep must not reach it."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    _too_deep(event.start_mark)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):  # libyaml's own limit (1000) came first
            _too_deep(getattr(exc, "problem_mark", None))
        # any other syntax error: the composer reports it below, in its own words


def _too_deep(mark: Any) -> None:
    raise YamlProblem(
        mark.line + 1 if mark is not None else None,
        (),
        f"nested more than {MAX_DEPTH} levels deep (limit MAX_DEPTH)",
        "limit",
    )


class _Dumper(yaml.SafeDumper):
    """Block style, keys in insertion order, short lists of scalars in flow style."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)  # indent list items under their key


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style: str | None
    if "\x85" in value:  # NEL: PyYAML writes it unescaped except in double quotes, and the
        style = '"'  # reader takes an unescaped NEL for a line break
    else:
        style = "|" if "\n" in value and len(value) > 40 else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(value: Any) -> str:
    """YAML text that `load_yaml` reads back to a value equal to `value`."""
    return yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=None,
        width=100,
    )
