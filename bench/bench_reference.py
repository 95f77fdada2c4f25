"""Benchmark of the reference model and service, each operation beside a bare baseline.

Run `python bench/bench_reference.py [--quick]`. For enter / update / leave / get (unfiltered,
by clientId, by connectionId) at several presence-set sizes, and for history page queries
(limit 100, with start/end; first page and next page) over several log sizes, it prints
operations per second for the model and the service, the same figure for a bare baseline
measured in the same run (a plain dict insert / assignment / delete for enter / update / leave,
`list(d.values())` for an unfiltered get, a dict lookup for a filtered get, bisect + slice on a
list for a history page), the slowdown against that baseline, and the growth of the cost per
operation from the smallest size to each size. The last line is the verdict on the complexity
claim: a filtered get and one history page cost O(result + log n), so their cost per operation
may grow only by a small constant factor (< 3x) from the smallest to the largest size (if only
the growth divided by the baseline's growth stays below 3x, the verdict says so: the machine's
caches, not the algorithm, made the difference, as the bare baseline shows).

Sizes: 10 / 1,000 / 100,000 members and 1,000 / 100,000 / 1,000,000 events
(`--quick`, the CI smoke: 10 / 1,000 / 10,000 members and 1,000 / 10,000 / 100,000 events).

Method: every size is built first (through the model, `service.model`, which is what the service
runs on; only the measured calls go through the API being measured). Then measurements run in
rounds, each round visiting every operation at every size, and each figure is the best of its
rounds: a machine busy with something else slows all sizes alike instead of one of them. No
listeners are subscribed, so the figures are the cost of the operations, not of fan-out.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import inspect
import itertools
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from presence_conformance.reference_impl.service import PresenceService

HEADER = (
    f"{'impl':<8}{'operation':<22}{'size':>10}{'ops/s':>13}{'baseline ops/s':>16}"
    f"{'slowdown':>10}{'growth':>11}{'baseline growth':>17}"
)
GROWTH_LIMIT = 3.0
VERDICT_OPERATIONS = ("get (clientId)", "get (connectionId)", "history page", "history next page")
CHANNEL = "bench"
HISTORY_CHANNEL = "bench-history"
BATCH = 100  # measured connections / keys per batch (fewer when the set is smaller)
LOOKUPS = 100  # distinct members a filtered get cycles through
WINDOWS = 200  # history windows a page query cycles through
ROUNDS = 7

# the baseline each operation is compared with
BASELINE_OF = {
    "enter": "dict insert",
    "update": "dict assign",
    "leave": "dict delete",
    "get (all)": "list(values)",
    "get (clientId)": "dict lookup",
    "get (connectionId)": "dict lookup",
    "history page": "bisect+slice",
    "history next page": "bisect+slice",
}

Key = tuple[str, str, int]  # (impl, operation, size); impl "baseline" for the baselines


@dataclass
class Measurable:
    """One function, or a pair run alternately (enter, then leave), each returning how many
    operations it did; `keys` name what each of them measures."""

    keys: tuple[Key, ...]
    fns: tuple[Callable[[], Any], ...]
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_async = inspect.iscoroutinefunction(self.fns[0])


@dataclass
class Row:
    """One measured operation at one size, beside its baseline."""

    impl: str
    operation: str
    size: int
    ops: float
    baseline_ops: float


class Clock:
    """A fake millisecond clock that moves on every second call (timestamps repeat)."""

    def __init__(self) -> None:
        self._calls = itertools.count()

    def __call__(self) -> int:
        return next(self._calls) // 2


async def run_round(m: Measurable, budget: float) -> list[float]:
    """Operations per second of each function of `m` over about `budget` seconds."""
    done = 0
    spent = [0.0] * len(m.fns)
    while sum(spent) < budget * len(m.fns) or done == 0:
        for i, fn in enumerate(m.fns):
            t0 = time.perf_counter()
            count = (await fn()) if m.is_async else fn()
            spent[i] += time.perf_counter() - t0
            if i == 0:
                done += count
    return [done / s for s in spent]


# -- presence operations ---------------------------------------------------------------------------


async def member_measurables(n: int) -> tuple[list[Measurable], PresenceService]:
    """enter / update / leave / get at `n` members: model, service and baselines."""
    service = PresenceService(clock=Clock())
    model = service.model
    k = min(BATCH, n)
    members = []  # (connection id, client id)
    owners = []  # the first k members belong to service connections, for service.update
    for i in range(n):
        client = f"user-{i}"
        if i < k:
            owners.append(await service.connect(client))
            cid = owners[-1].id
        else:
            cid = model.open_connection(client)
        model.enter(cid, CHANNEL, {"i": i})
        members.append((cid, client))
    extra = [await service.connect(f"extra-{j}") for j in range(k)]
    extra_ids = [c.id for c in extra]
    extra_presences = [c.channels.get(CHANNEL).presence for c in extra]
    update_ids = [cid for cid, _ in members[:k]]
    owner_presences = [o.channels.get(CHANNEL).presence for o in owners]
    reader = (await service.connect("reader")).channels.get(CHANNEL).presence
    await reader.get()  # attach and sync once
    rng = random.Random(n)
    sample = rng.sample(members, min(LOOKUPS, n))
    sample_clients = [client for _, client in sample]
    sample_conns = [cid for cid, _ in sample]

    # baselines: the same shapes on a plain dict keyed by member key
    table = {f"{cid}:{client}": {"i": i} for i, (cid, client) in enumerate(members)}
    extra_keys = [f"{cid}:extra-{j}" for j, cid in enumerate(extra_ids)]
    update_keys = [f"{cid}:user-{i}" for i, cid in enumerate(update_ids)]
    sample_keys = [f"{cid}:{client}" for cid, client in sample]

    def base_enter() -> int:
        for key in extra_keys:
            table[key] = "d"
        return k

    def base_leave() -> int:
        for key in extra_keys:
            del table[key]
        return k

    def base_update() -> int:
        for key in update_keys:
            table[key] = "u"
        return k

    def base_get() -> int:
        list(table.values())
        return 1

    def base_lookup() -> int:
        for key in sample_keys:
            table.get(key)
        return len(sample_keys)

    def m_enter() -> int:
        for cid in extra_ids:
            model.enter(cid, CHANNEL, "d")
        return k

    def m_leave() -> int:
        for cid in extra_ids:
            model.leave(cid, CHANNEL)
        return k

    def m_update() -> int:
        for cid in update_ids:
            model.update(cid, CHANNEL, "u")
        return k

    def m_get() -> int:
        model.get(CHANNEL)
        return 1

    def m_get_client() -> int:
        for client in sample_clients:
            model.get(CHANNEL, client_id=client)
        return len(sample_clients)

    def m_get_conn() -> int:
        for cid in sample_conns:
            model.get(CHANNEL, connection_id=cid)
        return len(sample_conns)

    async def s_enter() -> int:
        for p in extra_presences:
            await p.enter("d")
        return k

    async def s_leave() -> int:
        for p in extra_presences:
            await p.leave()
        return k

    async def s_update() -> int:
        for p in owner_presences:
            await p.update("u")
        return k

    async def s_get() -> int:
        await reader.get()
        return 1

    async def s_get_client() -> int:
        for client in sample_clients:
            await reader.get(client_id=client)
        return len(sample_clients)

    async def s_get_conn() -> int:
        for cid in sample_conns:
            await reader.get(connection_id=cid)
        return len(sample_conns)

    measurables = [
        Measurable(
            (("baseline", "dict insert", n), ("baseline", "dict delete", n)),
            (base_enter, base_leave),
        ),
        Measurable((("baseline", "dict assign", n),), (base_update,)),
        Measurable((("baseline", "list(values)", n),), (base_get,)),
        Measurable((("baseline", "dict lookup", n),), (base_lookup,)),
        Measurable((("model", "enter", n), ("model", "leave", n)), (m_enter, m_leave)),
        Measurable((("model", "update", n),), (m_update,)),
        Measurable((("model", "get (all)", n),), (m_get,)),
        Measurable((("model", "get (clientId)", n),), (m_get_client,)),
        Measurable((("model", "get (connectionId)", n),), (m_get_conn,)),
        Measurable((("service", "enter", n), ("service", "leave", n)), (s_enter, s_leave)),
        Measurable((("service", "update", n),), (s_update,)),
        Measurable((("service", "get (all)", n),), (s_get,)),
        Measurable((("service", "get (clientId)", n),), (s_get_client,)),
        Measurable((("service", "get (connectionId)", n),), (s_get_conn,)),
    ]
    return measurables, service


# -- history ---------------------------------------------------------------------------------------


async def history_measurables(events: int) -> tuple[list[Measurable], PresenceService]:
    """One history page (limit 100, start/end, both directions) and the next page over `events`."""
    service = PresenceService(clock=Clock())
    model = service.model
    writers = [model.open_connection(f"writer-{i}") for i in range(min(1000, events))]
    for i in range(events):
        model.update(writers[i % len(writers)], HISTORY_CHANNEL, "x")
    log = model.history_all(HISTORY_CHANNEL)
    times = [e.timestamp for e in log]
    last = times[-1]
    span = 500  # ~1,000 events per window: every first page is a full page of 100
    rng = random.Random(events)
    windows = [(s, s + span) for s in (rng.randint(0, max(0, last - span)) for _ in range(WINDOWS))]
    directions = ["forwards", "backwards"]
    reader = (await service.connect("history-reader")).channels.get(HISTORY_CHANNEL).presence

    def base_page() -> int:
        for i, (start, end) in enumerate(windows):
            lo = bisect.bisect_left(times, start)
            hi = bisect.bisect_right(times, end)
            if i % 2:
                log[max(lo, hi - 100) : hi][::-1]
            else:
                log[lo : min(hi, lo + 100)]
        return len(windows)

    def m_page() -> int:
        for i, (start, end) in enumerate(windows):
            model.history(
                HISTORY_CHANNEL, start=start, end=end, limit=100, direction=directions[i % 2]
            )
        return len(windows)

    cursors = [
        model.history(
            HISTORY_CHANNEL, start=s, end=e, limit=100, direction=directions[i % 2]
        ).next_cursor
        for i, (s, e) in enumerate(windows)
    ]

    def m_next() -> int:
        for i, (start, end) in enumerate(windows):
            model.history(
                HISTORY_CHANNEL,
                start=start,
                end=end,
                limit=100,
                direction=directions[i % 2],
                cursor=cursors[i],
            )
        return len(windows)

    async def s_page() -> int:
        for i, (start, end) in enumerate(windows):
            await reader.history(start=start, end=end, limit=100, direction=directions[i % 2])
        return len(windows)

    first_pages = [
        await reader.history(start=s, end=e, limit=100, direction=directions[i % 2])
        for i, (s, e) in enumerate(windows)
    ]

    async def s_next() -> int:
        for page in first_pages:
            await page.next()
        return len(first_pages)

    measurables = [
        Measurable((("baseline", "bisect+slice", events),), (base_page,)),
        Measurable((("model", "history page", events),), (m_page,)),
        Measurable((("model", "history next page", events),), (m_next,)),
        Measurable((("service", "history page", events),), (s_page,)),
        Measurable((("service", "history next page", events),), (s_next,)),
    ]
    return measurables, service


# -- report ----------------------------------------------------------------------------------------


def report(rows: list[Row]) -> tuple[list[str], float, float]:
    """The table lines, and the worst smallest-to-largest growth of the verdict's operations,
    raw and divided by the growth of their baseline (which cancels the machine's memory effects:
    a bare bisect + slice also slows down on a log too big for the caches)."""
    smallest: dict[tuple[str, str], Row] = {}
    largest: dict[tuple[str, str], Row] = {}
    for row in rows:
        key = (row.impl, row.operation)
        if key not in smallest or row.size < smallest[key].size:
            smallest[key] = row
        if key not in largest or row.size > largest[key].size:
            largest[key] = row
    lines = [HEADER, "-" * len(HEADER)]
    worst = worst_relative = 0.0
    for row in sorted(
        rows, key=lambda r: (r.operation.startswith("history"), r.operation, r.impl, r.size)
    ):
        first = smallest[(row.impl, row.operation)]
        growth = first.ops / row.ops  # cost per operation here / at the smallest size
        base_growth = first.baseline_ops / row.baseline_ops
        if row.operation in VERDICT_OPERATIONS and row is largest[(row.impl, row.operation)]:
            worst = max(worst, growth)
            worst_relative = max(worst_relative, growth / base_growth)
        lines.append(
            f"{row.impl:<8}{row.operation:<22}{row.size:>10,}{row.ops:>13,.0f}"
            f"{row.baseline_ops:>16,.0f}{row.baseline_ops / row.ops:>9.1f}x"
            f"{growth:>10.2f}x{base_growth:>16.2f}x"
        )
    return lines, worst, worst_relative


async def main_async(quick: bool) -> int:
    member_sizes = [10, 1_000, 10_000] if quick else [10, 1_000, 100_000]
    event_sizes = [1_000, 10_000, 100_000] if quick else [1_000, 100_000, 1_000_000]
    budget = 0.003 if quick else 0.06  # seconds per function per round
    measurables: list[Measurable] = []
    services = []
    for n in member_sizes:
        found, service = await member_measurables(n)
        measurables += found
        services.append(service)
        print(f"# built {n:,} members", file=sys.stderr, flush=True)
    for events in event_sizes:
        found, service = await history_measurables(events)
        measurables += found
        services.append(service)
        print(f"# built {events:,} events", file=sys.stderr, flush=True)
    best: dict[Key, float] = {}
    for round_number in range(ROUNDS):
        for m in measurables:
            for key, rate in zip(m.keys, await run_round(m, budget), strict=True):
                best[key] = max(best.get(key, 0.0), rate)
        print(f"# round {round_number + 1}/{ROUNDS}", file=sys.stderr, flush=True)
    for service in services:
        await service.close()
    rows = [
        Row(impl, op, size, ops, best[("baseline", BASELINE_OF[op], size)])
        for (impl, op, size), ops in best.items()
        if impl != "baseline"
    ]
    lines, worst, worst_relative = report(rows)
    print(
        f"presence reference benchmark ({'quick' if quick else 'full'}): operations per second "
        f"(best of {ROUNDS} interleaved rounds); slowdown = baseline ops/s / ops/s; "
        "growth = cost per operation at this size / at the smallest size"
    )
    print("\n".join(lines))
    if worst < GROWTH_LIMIT:
        verdict = "holds"
    elif worst_relative < GROWTH_LIMIT:
        verdict = "holds relative to the baseline"
    else:
        verdict = "DOES NOT HOLD"
    print(
        f"verdict: filtered get (clientId, connectionId) and one history page are O(result + log n): "
        f"{verdict} (worst growth {worst:.2f}x, {worst_relative:.2f}x relative to the baseline's, "
        f"from {member_sizes[0]:,} to {member_sizes[-1]:,} members and {event_sizes[0]:,} to "
        f"{event_sizes[-1]:,} events; limit {GROWTH_LIMIT:.0f}x)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and short timings (CI smoke test)"
    )
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args.quick))


if __name__ == "__main__":
    sys.exit(main())
