"""Helpers the project's tests share: the checkout's root, bounded async runs around an adapter or
the reference server, a benchmark script, polling for a condition, scenarios built in code, and writing
files of a temporary project.

Importable from every test folder as `support` (`pythonpath = ["tests"]` in pyproject.toml);
the fixtures built on these live in `tests/conftest.py`.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from presence_conformance.harness.results import CaseResult
from presence_conformance.harness.run.runner import RunSettings, run_scenario
from presence_conformance.harness.scenario import Scenario, scenario_from_dict
from presence_conformance.reference_impl.server import PresenceServer, ServerConfig

ROOT = Path(__file__).resolve().parent.parent
"""The checkout: `docs/`, `examples/`, `scenarios/`, `bench/` are read from here."""

T = TypeVar("T")
A = TypeVar("A", bound="Startable")


class Startable(Protocol):
    """Anything with async `start()` and `stop()`: an adapter or a server."""

    async def start(self) -> Any: ...

    async def stop(self) -> Any: ...


def run_adapter(adapter: A, body: Callable[[A], Awaitable[T]], limit: float = 30.0) -> T:
    """Start `adapter`, run `body(adapter)` within `limit` seconds, stop the adapter (always)."""

    async def main() -> T:
        await adapter.start()
        try:
            return await asyncio.wait_for(body(adapter), limit)
        finally:
            await adapter.stop()

    return asyncio.run(main())


def run_server(
    test: Callable[[PresenceServer], Awaitable[T]], timeout: float = 30.0, **config: Any
) -> T:
    """Start a reference server with `ServerConfig(**config)`, run `test(server)` within
    `timeout` seconds, stop the server (always)."""
    return run_adapter(PresenceServer(ServerConfig(**config)), test, timeout)


def run_bench(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `bench/<script> *args` with this Python from the checkout's root, as a user would; the
    completed process, its output captured as text (the exit code is the caller's to check)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def make_scenario(
    steps: list[dict],
    *,
    clients: dict | None = None,
    channels: tuple[str, ...] = ("room",),
    requirements: tuple[str, ...] = ("enter.adds-member",),
    case_id: str = "tests/x",
) -> Scenario:
    """A scenario of `steps` (clients `alice` and `bob` unless given), as if loaded from a file."""
    return scenario_from_dict(
        {
            "requirements": list(requirements),
            "clients": clients or {"alice": {}, "bob": {}},
            "channels": list(channels),
            "steps": steps,
        },
        case_id=case_id,
    )


def op(kind: str, client: str, channel: str = "room", **fields: Any) -> dict:
    """One operation step: `{kind: {client, channel, **fields}}`."""
    return {kind: {"client": client, "channel": channel, **fields}}


async def run_case(case: Scenario, adapter: Any, settings: RunSettings) -> CaseResult:
    """Start `adapter`, run one scenario on it with the runner, stop the adapter (always)."""
    await adapter.start()
    try:
        return await run_scenario(case, adapter, settings)
    finally:
        await adapter.stop()


async def until(
    predicate: Callable[[], bool],
    timeout: float = 5.0,
    what: str = "condition",
    interval: float = 0.01,
) -> None:
    """Poll `predicate` every `interval` seconds; fail the test if it is not true in `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def write_files(root: Path, files: Mapping[str, str]) -> Path:
    """Write each `relative path -> text` of `files` below `root` (folders made); return `root`."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@functools.cache
def _packaged() -> tuple[Scenario, ...]:
    from presence_conformance.harness.session import load_suite

    return tuple(load_suite())


def packaged_suite() -> list[Scenario]:
    """The shipped scenarios, sorted by case id, loaded once per process (loading and validating
    the 200-odd files takes seconds; the tests only read them)."""
    return list(_packaged())


def packaged(case_id: str) -> Scenario:
    """The shipped scenario `case_id` (its file alone, unless the suite is loaded already)."""
    if _packaged.cache_info().currsize == 0:
        from presence_conformance.harness.scenario import load_scenario
        from presence_conformance.scenarios import scenarios_root

        root = scenarios_root()
        return load_scenario(root / f"{case_id}.yaml", root)
    return next(s for s in _packaged() if s.case_id == case_id)
