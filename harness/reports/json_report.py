"""`results.json`: the run as data (`RunResult.to_json()`), valid against
`spec/schemas/results.json`, and the way back (`load_results`)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from presence_conformance.harness.reports.common import jsonable, write_atomic
from presence_conformance.harness.results import RunResult

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "spec" / "schemas" / "results.json"


class ResultsFileError(ValueError):
    """A results file that cannot be read, is not JSON, or does not match the schema."""


def dumps(run: RunResult) -> str:
    """`run` as the text of results.json (binary data as `{"$binary": base64}`).

    One case per line: compact enough for big runs, still diffable case by case.
    """
    doc = run.to_json()
    cases = doc.pop("cases")
    try:  # fast path: the C encoder, binary and other oddities through `default`
        enc = [json.dumps(c, ensure_ascii=True, allow_nan=False, default=jsonable) for c in cases]
        head = json.dumps(doc, ensure_ascii=True, allow_nan=False, default=jsonable)
    except ValueError:  # NaN / Infinity somewhere: JSON has none, jsonable() spells them out
        enc = [json.dumps(jsonable(c), ensure_ascii=True, allow_nan=False) for c in cases]
        head = json.dumps(jsonable(doc), ensure_ascii=True, allow_nan=False)
    body = ",\n".join(enc)
    return f'{head[:-1]}, "cases": [\n{body}\n]}}\n' if head != "{}" else \
        f'{{"cases": [\n{body}\n]}}\n'


def write_json(run: RunResult, path: Path) -> Path:
    """Write results.json atomically."""
    return write_atomic(path, dumps(run))


@cache
def results_schema() -> dict[str, Any]:
    """The JSON Schema of results.json."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validation_errors(doc: Any, limit: int = 20) -> list[str]:
    """Schema violations of a results document, as `path: message` lines (empty when valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(results_schema())
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{where}: {err.message}")
        if len(out) >= limit:
            break
    return out


def load_results(path: str | Path, validate: bool = True) -> RunResult:
    """Read a results.json back into a `RunResult` (ResultsFileError with the reason if not)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ResultsFileError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{p}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from exc
    if validate:
        errors = validation_errors(doc)
        if errors:
            raise ResultsFileError(f"{p}: not a results file (spec/schemas/results.json):\n  "
                                   + "\n  ".join(errors))
    try:
        return RunResult.from_json(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultsFileError(f"{p}: malformed results: {exc}") from exc
