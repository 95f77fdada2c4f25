"""Fixtures of the packaging tests: one wheel built from the checkout, and one fresh venv with
that wheel installed, each made once per test run (shared by the xdist workers, under a lock).

The venv is created without pip and without the system's site-packages; the wheel goes in with
`pip --python VENV install --no-index --no-deps`. Its dependencies (hypothesis, pytest, ...)
come from the venv running the tests, through a `.pth` line naming that venv's site-packages:
such a line puts the folder on `sys.path` without running the `.pth` files inside it, so the
editable install of the checkout (a `.pth` import hook there) does not reach the new venv, and
neither does the checkout itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import site
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging_support import ROOT, Installed, run

SOURCES = ("pyproject.toml", "README.md", "presence_conformance", "harness", "reference_impl",
           "spec", "scenarios")  # fmt: skip
"""What a wheel is built from (copied, so that stale `build/` or `node_modules` never leak in)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "packaging: builds the wheel and a venv (about 10-20 s in all); -m 'not packaging' skips",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.packaging)


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this test run shared by the xdist workers."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the workers' basetemps are siblings in the run's folder
    folder = base / "packaging"
    folder.mkdir(exist_ok=True)
    return folder


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the exclusive lock of `folder` (one xdist worker builds, the others wait)."""
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def wheel(shared_dir: Path) -> Path:
    """The wheel built from a copy of the checkout's sources (`pip wheel --no-deps`)."""
    with locked(shared_dir):
        return _build_wheel(shared_dir)


def _build_wheel(shared_dir: Path) -> Path:
    out = shared_dir / "wheel"
    built = sorted(out.glob("*.whl"))
    if not built:
        source = shared_dir / "source"
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "node_modules", "*.egg-info")
        for name in SOURCES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, source / name, ignore=ignore)
            else:
                shutil.copy2(ROOT / name, source / name)
        result = run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source], ROOT
        )
        assert result.returncode == 0, result.stderr[-3000:]
        built = sorted(out.glob("*.whl"))
    assert len(built) == 1, built
    return built[0]


@pytest.fixture(scope="session")
def installed(shared_dir: Path, wheel: Path) -> Installed:
    """A fresh venv (no pip, no system site-packages) with only the wheel installed in it."""
    with locked(shared_dir):
        return _install(shared_dir, wheel)


def _install(shared_dir: Path, wheel: Path) -> Installed:
    venv = shared_dir / "venv"
    python = venv / "bin" / "python"
    if not (venv / "ready").exists():
        shutil.rmtree(venv, ignore_errors=True)
        result = run([sys.executable, "-m", "venv", "--without-pip", venv], shared_dir)
        assert result.returncode == 0, result.stderr
        result = run(
            [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index",
             "--no-deps", wheel],
            shared_dir,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           shared_dir).stdout.strip())  # fmt: skip
        outer = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
        (purelib / "_test_dependencies.pth").write_text("".join(f"{p}\n" for p in outer))
        (venv / "ready").touch()
    purelib = next((venv / "lib").glob("python3*/site-packages"))
    return Installed(venv, python, purelib)
