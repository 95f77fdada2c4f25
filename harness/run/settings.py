"""How the runner waits: `RunSettings`, shared by the driver, the runner and every front end."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RunSettings"]


@dataclass
class RunSettings:
    """How the runner waits.

    - `op_timeout`: seconds one adapter call may take, and the bound of every model-driven wait
      (events a listener must receive, `sync_complete()` after an attach, a `get` or history
      converging);
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
    quiet_period: float | None = None
    leave_grace: float | None = None
    sync_wait: bool = True
    poll_interval: float = 0.01
    close_timeout: float = 2.0
    channel_prefix: str | None = None
    keep_history: bool = True
