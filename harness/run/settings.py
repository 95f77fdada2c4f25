"""How the runner waits: `RunSettings`, shared by the driver, the runner and every front end."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RunSettings"]


@dataclass
class RunSettings:
    """How the runner waits.

    - `op_timeout`: seconds one adapter call may take (an operation, connect, close, drop, one
      read);
    - `wait_timeout`: seconds the runner waits for what it only observes: the events a listener
      must receive, `sync_complete()` turning true after an attach, a `get` or the canonical
      history converging, the end-of-case reads (a dropped connection's leaves get the leave
      grace on top). Never more than `op_timeout`; None: `op_timeout` (the budgets of harness
      0.1, which made a broken implementation wait `op_timeout` once per read);
    - `settle`: where the adapter can `quiesce()`, stop waiting as soon as nothing more can come:
      an event wait once nothing arrived between two quiesced checks, a read once it repeats
      unchanged after a quiesce;
    - `quiet_period`: seconds to watch for extra events at the end of a case when the adapter
      cannot `quiesce()` (None: the adapter's `quiet_period`);
    - `leave_grace`: seconds a dropped connection's members may stay (None: the adapter's);
    - `sync_wait`: after a step attaches a channel, wait until `sync_complete()` is true (only
      with `Feature.SYNC_COMPLETE`);
    - `poll_interval`: the longest pause between two polls (`get`, history, `sync_complete`);
    - `close_timeout`: seconds each connection may take to close at the end of a case;
    - `channel_prefix`: the prefix added to channel names (None: a random one per case);
    - `keep_history`: put the history in the `CaseResult` (always kept for failures).
    """

    op_timeout: float = 5.0
    wait_timeout: float | None = 1.0
    settle: bool = True
    quiet_period: float | None = None
    leave_grace: float | None = None
    sync_wait: bool = True
    poll_interval: float = 0.01
    close_timeout: float = 2.0
    channel_prefix: str | None = None
    keep_history: bool = True

    @property
    def wait_budget(self) -> float:
        """Seconds for one wait of the runner (events, convergence, end-of-case reads)."""
        if self.wait_timeout is None:
            return self.op_timeout
        return min(self.wait_timeout, self.op_timeout)

    @classmethod
    def legacy_budgets(cls, **kwargs: object) -> RunSettings:
        """Settings that wait as harness 0.1 did: every wait bounded by `op_timeout` alone, no
        settling on `quiesce()` (for comparisons: bench/bench_verdict.py)."""
        return cls(wait_timeout=None, settle=False, **kwargs)  # type: ignore[arg-type]
