"""Scenario files, shipped with the package as data."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

__all__ = ["scenarios_root"]


def scenarios_root() -> Path:
    """The folder that holds the packaged scenario files (`<area>/<name>.yaml`).

    Installed from a wheel or from a source checkout, the package is a plain directory on disk;
    `as_file` only matters for zipped installs, where it extracts a copy that stays valid for
    the life of the process.
    """
    root = files(__name__)
    if isinstance(root, Path):
        return root
    # Zipped install: materialise the tree once and keep it (the context is never exited).
    return as_file(root).__enter__()
