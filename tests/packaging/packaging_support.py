"""Helpers of the packaging tests (a module of its own name: `conftest` is ambiguous on the
test path)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Installed:
    """A fresh venv with the wheel installed."""

    venv: Path
    python: Path
    site_packages: Path

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name


def run(
    command: list[str | Path], cwd: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `command` (no shell), capturing its output as text; never raises on failure."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    environment.update(env)
    return subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
