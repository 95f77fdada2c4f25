"""Generation profiles: how many programs, how long, how random, and where failures are kept.

- `ci`: derandomized (the same programs on every run for a given harness version), 60 programs of
  up to 20 steps, no deadline, and no example database written (one given explicitly is read
  only, so known failures are replayed first without CI writing to it);
- `dev`: random, 200 programs, with the example database `.hypothesis/` on, so a failure found
  once is tried first on the next run until it is fixed;
- `thorough`: a long campaign: 5,000 programs of up to 40 steps, database on.

`--examples N` overrides the number of programs, `--seed N` makes a run reproducible (the `ci`
profile is reproducible anyway; with a seed it draws from that seed instead). The database is
Hypothesis' `DirectoryBasedExampleDatabase`, or its `RedisExampleDatabase` for a location
`redis://HOST:PORT/N` (workers on several machines sharing one database: `redis_database`);
its keys are namespaced per adapter, so failures of one adapter are not replayed (nor
deleted) by the runs of another.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.database import (
    DirectoryBasedExampleDatabase,
    ExampleDatabase,
    ReadOnlyDatabase,
)

__all__ = [
    "CI_SEED",
    "DEFAULT_DATABASE",
    "DEFAULT_PROFILE",
    "PROFILES",
    "NamespacedDatabase",
    "Profile",
    "hypothesis_settings",
    "profile",
    "redis_database",
]

DEFAULT_PROFILE = "ci"
DEFAULT_DATABASE = Path(".hypothesis") / "presence-conformance"
"""Where the `dev` and `thorough` profiles keep failing programs (env PRESENCE_GENERATION_DB)."""


@dataclass(frozen=True)
class Profile:
    """A named set of generation settings."""

    name: str
    description: str
    max_examples: int
    max_steps: int
    derandomize: bool
    database: bool  # write failing programs to the example database
    min_steps: int = 1


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        "ci",
        "derandomized, 60 programs of up to 20 steps, database read-only",
        max_examples=60,
        max_steps=20,
        derandomize=True,
        database=False,
    ),
    "dev": Profile(
        "dev",
        "random, 200 programs of up to 20 steps, example database on",
        max_examples=200,
        max_steps=20,
        derandomize=False,
        database=True,
    ),
    "thorough": Profile(
        "thorough",
        "random, 5,000 programs of up to 40 steps, database on",
        max_examples=5000,
        max_steps=40,
        derandomize=False,
        database=True,
    ),
}


def profile(name: str, examples: int | None = None) -> Profile:
    """The profile `name`, with `examples` programs instead of its default when given."""
    try:
        chosen = PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown generation profile {name!r}; known: {', '.join(PROFILES)}"
        ) from None
    if examples is not None:
        if examples < 1:
            raise ValueError(f"examples: expected a positive number, got {examples}")
        chosen = replace(chosen, max_examples=examples)
    return chosen


class NamespacedDatabase(ExampleDatabase):
    """An example database whose keys are prefixed, so that several adapters share a directory
    without replaying (or deleting) each other's failures."""

    def __init__(self, inner: ExampleDatabase, namespace: str) -> None:
        super().__init__()
        self.inner = inner
        self.prefix = namespace.encode() + b"\x00"

    def __repr__(self) -> str:
        return f"NamespacedDatabase({self.inner!r}, {self.prefix[:-1].decode()!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, NamespacedDatabase)
            and self.inner == other.inner
            and self.prefix == other.prefix
        )

    def __hash__(self) -> int:
        return hash((self.prefix, id(self.inner)))

    def save(self, key: bytes, value: bytes) -> None:
        self.inner.save(self.prefix + key, value)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self.inner.fetch(self.prefix + key)

    def delete(self, key: bytes, value: bytes) -> None:
        self.inner.delete(self.prefix + key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.inner.move(self.prefix + src, self.prefix + dest, value)


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
"""A database location starting with one of these is a Redis server (`redis_database`)."""


def redis_database(url: str) -> ExampleDatabase:
    """Hypothesis' `RedisExampleDatabase` on the server at `url` (`redis://HOST:PORT/N`), so
    that workers on several machines share one example database: each replays every failure
    any of them found. Needs the `redis` package (the `campaign` extra)."""
    try:
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError as exc:
        raise ValueError(
            f"example database {url!r}: the redis package is missing "
            "(pip install 'presence-conformance[campaign]')"
        ) from exc
    try:
        client = redis.Redis.from_url(url)
    except ValueError as exc:
        raise ValueError(f"example database {url!r}: {exc}") from exc
    return RedisExampleDatabase(client, key_prefix=b"presence-conformance:")


def _database(
    chosen: Profile, path: str | Path | None, namespace: str, use_database: bool | None
) -> ExampleDatabase | None:
    if use_database is False:
        return None
    explicit = path is not None or os.environ.get("PRESENCE_GENERATION_DB")
    if not chosen.database and not explicit and not use_database:
        return None
    location = str(path or os.environ.get("PRESENCE_GENERATION_DB") or DEFAULT_DATABASE)
    inner: ExampleDatabase = (
        redis_database(location)
        if location.startswith(REDIS_SCHEMES)
        else DirectoryBasedExampleDatabase(location)
    )
    if not chosen.database and not use_database:
        inner = ReadOnlyDatabase(inner)  # ci: replay known failures, never write
    return NamespacedDatabase(inner, namespace)


CI_SEED = 20260101
"""The seed a derandomized profile draws from when it also replays an example database
(Hypothesis' `derandomize=True` refuses a database; a fixed seed is just as deterministic)."""


def hypothesis_settings(
    chosen: Profile,
    *,
    namespace: str = "default",
    database: str | Path | None = None,
    use_database: bool | None = None,
    seed: int | None = None,
    shrink: bool = True,
    verbosity: Verbosity = Verbosity.quiet,
    **overrides: Any,
) -> tuple[settings, int | None]:
    """The Hypothesis settings of a profile, and the seed to run them with (None: the
    profile's own randomness).

    `namespace` keys the example database (the adapter's name); `database` is its directory, or
    a Redis URL `redis://HOST:PORT/N` shared by several workers (default
    `.hypothesis/presence-conformance`, or `$PRESENCE_GENERATION_DB`); `use_database`
    forces it on (True) or off (False) whatever the profile says. `seed` makes a run
    reproducible (and then no database is used unless one is asked for explicitly). `shrink=False` stops at the first failing program (used to measure detection).
    Other keyword arguments are passed on to `hypothesis.settings`.
    """
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    if shrink:
        phases.append(Phase.shrink)
    db = _database(chosen, database, namespace, use_database)
    if seed is not None and database is None and not use_database:
        db = None  # a seed reproduces a run's programs; stored failures would change the run
    derandomize = chosen.derandomize and seed is None
    if derandomize and db is not None:
        derandomize, seed = False, CI_SEED
    values: dict[str, Any] = {
        "max_examples": chosen.max_examples,
        "derandomize": derandomize,
        "deadline": None,
        "database": db,
        "phases": phases,
        "report_multiple_bugs": False,
        "print_blob": False,
        "verbosity": verbosity,
        "suppress_health_check": list(HealthCheck),
    }
    values.update(overrides)
    return settings(**values), seed
