"""The replay command a pytest failure prints, shared by the scenario items and the generated
item (a module of its own, so that neither imports the other)."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the plugin module loads with every pytest run: keep its imports light
    from presence_conformance.harness.session import ConformanceSession

__all__ = ["replay_hint"]


def replay_hint(session: ConformanceSession, scenario_file: str | None) -> str | None:
    """The command that replays `scenario_file` with the adapter of this pytest session.

    A name registered in this process (a conftest.py: `register_adapter` or the hook) exists only
    inside pytest, so its replay command is `pytest --adapter=NAME --replay FILE`; any other name
    keeps the `presence-conformance replay` command the session made.
    """
    from presence_conformance.harness.adapters.registry import is_registered

    if scenario_file is None or not is_registered(session.adapter_name):
        return None
    parts = ["pytest", f"--adapter={session.adapter_name}", "--replay", str(scenario_file)]
    parts += [f"--adapter-option={k}={v}" for k, v in session.options.items()]
    return shlex.join(parts)
