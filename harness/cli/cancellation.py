"""SIGINT and SIGTERM during a command (Ctrl-C, a cancelled CI job): cancel, report, exit.

`cancel_on_signals()` installs a `Cancellation` for both signals while a command runs. The first
signal cancels the attached session (`ConformanceSession.cancel`): the call in flight is
cancelled on the adapter's loop, nothing further starts, and the command goes on to write its
partial report (`run`, `replay`) or its result so far (`generate`). The handler raises
nothing: an exception raised by a signal handler lands wherever the main thread happens to be,
and a `finally`, a cleanup or a finalizer there can lose it. A second signal ends the process at
once, without a report.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

__all__ = ["Cancellation", "cancel_on_signals"]

EXIT_INTERRUPTED_AGAIN = 3  # the CLI's "the harness failed or the run is partial"


class Cancellation:
    """What the first and the second signal do (see the module docstring)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, what: str = "writing the partial report") -> None:
        self.session: Any = None
        self.signals = 0
        self.what = what

    def attach(self, session: Any) -> None:
        """Cancel `session` on the next signal (at once if one came before it existed)."""
        self.session = session
        if self.signals:
            session.cancel("interrupted")

    def handle(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if self.signals > 1:
            with contextlib.suppress(OSError):
                os.write(2, b"presence-conformance: interrupted again: exiting without a report\n")
            os._exit(EXIT_INTERRUPTED_AGAIN)
        with contextlib.suppress(OSError):
            os.write(2, f"presence-conformance: interrupted: stopping, {self.what}\n".encode())
        if self.session is not None:
            self.session.cancel("interrupted")


@contextlib.contextmanager
def cancel_on_signals(what: str = "writing the partial report") -> Iterator[Cancellation]:
    """Install a `Cancellation` for SIGINT and SIGTERM (main thread only), restore on exit."""
    cancellation = Cancellation(what)
    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in Cancellation.SIGNALS:
            previous[sig] = signal.signal(sig, cancellation.handle)
    except ValueError:  # not the main thread: signals are not ours to handle
        pass
    try:
        yield cancellation
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
