"""Fixtures shared by the test folders: the shipped catalogue and scenario suite (loaded once a
module), and a module written for one test that `import` and `module:Class` specs can find.

The folders mirror the packages: the tests of `harness/run/` are in `tests/harness/run/`, those of
`reference_impl/server/` in `tests/reference_impl/server/`, the benchmarks' smoke tests in
`tests/bench/`. The folders have no `__init__.py`, so each test module's name must be unique.

Plain helpers (bounded runs around an adapter or the server, polling, scenario builders) are in
`tests/support.py`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import packaged_suite

from presence_conformance import spec


@pytest.fixture(scope="module")
def catalogue() -> spec.Catalogue:
    """The shipped requirement catalogue (`spec/requirements.yaml`)."""
    return spec.load_requirements()


@pytest.fixture(scope="module")
def suite() -> list[Any]:
    """The shipped scenario suite, sorted by case id (load_scenarios raises one ScenarioError
    listing every problem of every file)."""
    return packaged_suite()


@pytest.fixture
def module_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], str]:
    """`module_on_path(name, source)`: write `source` as module `name` in a folder put on
    sys.path for this test (a stale import of that name is forgotten); returns `name`."""

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    return write
