"""The installed version of presence-conformance, as results and saved failures record it."""

from __future__ import annotations

import importlib.metadata

__all__ = ["harness_version"]


def harness_version() -> str:
    """The installed version of presence-conformance ("unknown" from a bare checkout)."""
    try:
        return importlib.metadata.version("presence-conformance")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
