"""Known-failing lists: the failures an adapter is known to have, kept strict.

A list is a text file, one pattern per line, matched with `fnmatch` against a case ID
(`history/limit-*`) or a requirement ID (`history.limit-default-100`). `#` starts a comment; a
reason may follow the pattern after ` # `:

    # ably-python: known gaps
    history/limit-default-100      # server caps pages at 50
    wire.*                         # wire checks need the reference server

`apply(run)` marks every failing case a pattern matches as `known_failing` (it no longer fails the
run) and returns an error for every STALE pattern: one that matched only passing cases, or no
failing case at all. A stale list fails the run (connectrpc's `--known-failing` is strict the
same way), so a fixed bug cannot hide behind an old entry.

A case-ID pattern matches a failing case whatever it violated. A requirement-ID pattern matches a
`fail`/`non-strict` case only if one of its violations is of a matching requirement, and a
`timeout`/`error` case if it checks a matching requirement.

Lists shipped with the harness live in `harness/expectations/<adapter>.txt`
(`KnownFailing.for_adapter(name)`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from presence_conformance.harness.results import CaseResult, Outcome, RunResult

EXPECTATIONS_DIR = Path(__file__).resolve().parent.parent / "expectations"


@dataclass(frozen=True)
class Entry:
    """One pattern of a known-failing list."""

    pattern: str
    reason: str = ""
    line: int = 0
    source: str = ""

    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.source else f"line {self.line}"


def _is_failing(case: CaseResult) -> bool:
    return case.outcome.is_failure or case.outcome is Outcome.NON_STRICT


def _matches(entry: Entry, case: CaseResult) -> bool:
    pat = entry.pattern
    if fnmatch.fnmatchcase(case.case_id, pat):
        return True
    if case.outcome in (Outcome.FAIL, Outcome.NON_STRICT) and case.violations:
        reqs = [v.requirement for v in case.violations]
    else:
        reqs = list(case.requirements) + [v.requirement for v in case.violations]
    return any(fnmatch.fnmatchcase(r, pat) for r in reqs)


@dataclass
class KnownFailing:
    """A parsed known-failing list."""

    entries: list[Entry] = field(default_factory=list)
    source: str = ""

    @classmethod
    def parse(cls, text: str, source: str = "") -> KnownFailing:
        """Parse the text of a list (see the module docstring for the format)."""
        entries = []
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            pattern, sep, reason = line.partition(" #")
            if not sep:
                pattern, sep, reason = line.partition("\t#")
            entries.append(Entry(pattern.strip(), reason.strip(), n, source))
        return cls(entries, source)

    @classmethod
    def load(cls, path: str | Path) -> KnownFailing:
        """Read a list from `path` (OSError if it cannot be read)."""
        p = Path(path)
        return cls.parse(p.read_text(encoding="utf-8"), str(p))

    @classmethod
    def for_adapter(cls, name: str) -> KnownFailing:
        """The list shipped for adapter `name` (`harness/expectations/<name>.txt`); empty if none."""
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        path = EXPECTATIONS_DIR / f"{safe}.txt"
        return cls.load(path) if path.is_file() else cls(source=str(path))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def reason_for(self, case: CaseResult) -> str | None:
        """The first matching entry's reason ('' if it has none); None if nothing matches."""
        for e in self.entries:
            if _matches(e, case):
                return e.reason
        return None

    def apply(self, run: RunResult, complete: bool = True) -> list[str]:
        """Mark the failing cases of `run` that a pattern matches `known_failing`; return one
        error per stale pattern.

        Idempotent. A pattern that matches no case at all is stale too, except in a partial run
        or a selection (`complete=False`): the cases it names may simply not have run.
        """
        errors: list[str] = []
        for e in self.entries:
            matched = [c for c in run.cases if _matches(e, c)]
            failing = [c for c in matched if _is_failing(c)]
            for c in failing:
                c.known_failing = True
            if failing:
                continue
            if matched:
                ids = ", ".join(c.case_id for c in matched[:5])
                more = f" (+{len(matched) - 5} more)" if len(matched) > 5 else ""
                outcomes = sorted({c.outcome.value for c in matched})
                errors.append(
                    f"stale known-failing entry {e.pattern!r} ({e.where()}): it matched only "
                    f"{'/'.join(outcomes)} cases ({ids}{more}); remove it from the list")
            elif complete and not run.partial:
                errors.append(
                    f"stale known-failing entry {e.pattern!r} ({e.where()}): it matched no case; "
                    f"remove it or fix the pattern")
        return errors
