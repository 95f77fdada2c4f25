"""The command line that replays one scenario file (a saved failure, a report's case)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

__all__ = ["replay_command"]


def replay_command(
    scenario_file: str | Path | None, adapter: str, options: Mapping[str, str] | None = None
) -> str | None:
    """The shell command that replays one scenario file against `adapter`."""
    if scenario_file is None:
        return None
    parts = ["presence-conformance", "replay", str(scenario_file), "--adapter", adapter]
    for key, value in (options or {}).items():
        parts += ["--adapter-option", f"{key}={value}"]
    return shlex.join(parts)
