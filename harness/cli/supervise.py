"""The parent process of `presence-conformance run|replay|generate`: no verdict, no exit 0.

Adapter code runs inside the harness's process, so it can end that process behind the
harness's back (`os._exit(0)`, a crash of a native extension, the out-of-memory killer), and the
process's exit code is then whatever the adapter chose. So when the command line is the
process's own (the console script, `python -m presence_conformance.harness.cli`), these
commands run in a child process, and this parent decides the exit code:

- the child writes its exit code to a verdict file (path in `VERDICT_ENV`) as the last thing
  `main()` does; the parent exits with that code;
- a child that ended without writing it did not finish: exit 3 (the `run` command has written
  a `results.json` marked partial, "unfinished", at its start, which stays).

SIGINT, SIGTERM and SIGHUP sent to the parent are passed on to the child (its own process
group, so a Ctrl-C in a terminal reaches it once), which writes its partial report as usual.
`NO_SUPERVISOR_ENV=1` runs the command in the process itself (e.g. under a debugger).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "NO_SUPERVISOR_ENV",
    "SUPERVISED_COMMANDS",
    "VERDICT_ENV",
    "supervise",
    "wants_supervisor",
    "watch_parent",
    "write_verdict",
]

VERDICT_ENV = "PRESENCE_CONFORMANCE_VERDICT_FILE"
NO_SUPERVISOR_ENV = "PRESENCE_CONFORMANCE_NO_SUPERVISOR"
SUPERVISED_COMMANDS = frozenset({"run", "replay", "generate"})
EXIT_HARNESS = 3
SHUTDOWN_GRACE = 10.0  # seconds a child that gave its verdict may take to exit
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if os.name == "posix" else ()


def wants_supervisor(argv: Sequence[str]) -> bool:
    """Whether the command line `argv` (the process's own) runs under a parent process."""
    return (
        os.name == "posix"
        and bool(argv)
        and argv[0] in SUPERVISED_COMMANDS
        and not any(a in ("-h", "--help") for a in argv)
        and os.environ.get(NO_SUPERVISOR_ENV, "") in ("", "0")
    )


def supervise(argv: Sequence[str]) -> int:
    """Run `presence-conformance ARGV` in a child process; its verdict, or 3 without one."""
    fd, name = tempfile.mkstemp(prefix="presence-conformance-verdict-")
    os.close(fd)
    verdict = Path(name)
    env = {**os.environ, VERDICT_ENV: name}
    command = [sys.executable, "-m", "presence_conformance.harness.cli", *argv]
    try:
        # its own process group: a Ctrl-C in a terminal reaches it once, through `forward`;
        # no terminal input, which a background process group could not read anyway
        child = subprocess.Popen(command, env=env, process_group=0, stdin=subprocess.DEVNULL)
    except OSError as exc:
        verdict.unlink(missing_ok=True)
        print(f"presence-conformance: cannot start the run: {exc}", file=sys.stderr)
        return EXIT_HARNESS

    def forward(signum: int, frame: Any) -> None:
        try:
            child.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)
        except OSError:
            pass

    previous = {}
    for sig in _FORWARDED:
        try:
            previous[sig] = signal.signal(sig, forward)
        except ValueError:  # not the main thread: the child still gets its own signals
            break
    try:
        code = _wait(child, verdict)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    answer = _read(verdict)
    verdict.unlink(missing_ok=True)
    if answer is not None:
        return answer
    if code is not None and code < 0:
        how = f"was killed by signal {_signal_name(-code)}"
    else:
        how = f"exited with code {code}"
    print(
        f"presence-conformance: the {argv[0]} did not finish: its process {how} before the "
        "harness gave a verdict (did the adapter end the process, e.g. os._exit()? did it run "
        "out of memory?). Exit 3; a results.json written by this run says partial, unfinished.",
        file=sys.stderr,
        flush=True,
    )
    return EXIT_HARNESS


def _wait(child: subprocess.Popen[bytes], verdict: Path) -> int | None:
    """Wait for the child; once it has given its verdict, give it a bounded time to exit."""
    given: float | None = None
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if given is None and _read(verdict) is not None:
            given = time.monotonic()
        if given is not None and time.monotonic() - given > SHUTDOWN_GRACE:
            # the verdict stands; a thread or atexit hook of the adapter keeps it alive
            child.kill()
            return child.wait()


def _read(verdict: Path) -> int | None:
    try:
        text = verdict.read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def write_verdict(path: str, code: int) -> None:
    """In the child: hand the exit code to the parent (the last thing `main()` does)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(f"{code}\n")
    os.replace(tmp, path)


def watch_parent() -> None:
    """In the child: if the parent disappears (killed), stop like on SIGTERM (partial report)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except OSError:
            pass

    threading.Thread(target=watch, name="presence-parent-watch", daemon=True).start()
