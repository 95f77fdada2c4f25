"""Runner overhead: a scenario run through the harness against `reference`, as a ratio to the same
operations called on the reference service directly, measured side by side in one run; and the
whole packaged suite against `reference` (target: under 60 s on a 2-core machine).

    python bench/bench_runner.py [--quick]

The direct baseline does what a careful hand-written test would: the same calls in the same order,
awaiting each one and then the delivery of its events to the listeners, plus one final `get` per
client and a full history read (the runner does these for its convergence and history checks).
The ratio is the price of model-driven waiting, recording, matching and every check.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from presence_conformance.harness.adapters.reference import ReferenceAdapter  # noqa: E402
from presence_conformance.harness.run.runner import RunSettings, run_scenario, run_scenarios  # noqa: E402
from presence_conformance.harness.scenario import Scenario, load_scenarios, scenario_from_dict  # noqa: E402
from presence_conformance.reference_impl.service import PresenceService  # noqa: E402

CLIENTS = ["alice", "bob", "carol"]


def program(rounds: int) -> list[tuple[str, str, object]]:
    """(operation, client, data) triples: subscribe, then enter/update/get/leave rounds."""
    ops: list[tuple[str, str, object]] = [("subscribe", c, None) for c in CLIENTS]
    for r in range(rounds):
        for c in CLIENTS:
            ops.append(("enter", c, {"round": r, "who": c}))
        ops.append(("update", CLIENTS[r % 3], f"typing {r}"))
        ops.append(("get", CLIENTS[(r + 1) % 3], None))
        ops.append(("leave", CLIENTS[(r + 2) % 3], None))
    return ops


def scenario(ops: list[tuple[str, str, object]]) -> dict:
    steps = []
    for op, client, data in ops:
        if op == "subscribe":
            steps.append(
                {"subscribe": {"client": client, "channel": "room", "listener": f"L-{client}"}}
            )
        elif op == "get":
            steps.append({"get": {"client": client, "channel": "room"}})
        else:
            args = {"client": client, "channel": "room"}
            if data is not None:
                args["data"] = data
            steps.append({op: args})
    steps.append(
        {
            "history": {
                "client": "alice",
                "channel": "room",
                "limit": 1000,
                "direction": "forwards",
                "pages": "all",
            }
        }
    )
    return {
        "name": "bench",
        "requirements": ["enter.adds-member"],
        "clients": {c: {"client_id": c} for c in CLIENTS},
        "channels": ["room"],
        "steps": steps,
    }


async def direct(ops: list[tuple[str, str, object]]) -> float:
    """The same operations on the service directly; seconds."""
    t0 = time.perf_counter()
    service = PresenceService(leave_grace=0.2)
    conns = {c: await service.connect(c) for c in CLIENTS}
    received: list = []
    presences = {c: conn.channels.get("room").presence for c, conn in conns.items()}
    for op, client, data in ops:
        p = presences[client]
        if op == "subscribe":
            await p.subscribe(received.append)
        elif op == "get":
            await p.get()
        else:
            await getattr(p, op)(data)
        while service.pending_deliveries():
            await asyncio.sleep(0)
    page = await presences["alice"].history(limit=1000, direction="forwards")
    while page.has_next():
        page = await page.next()
    for p in presences.values():
        await p.get()
    for conn in conns.values():
        await conn.close()
    await service.close()
    return time.perf_counter() - t0


async def harnessed(parsed: Scenario) -> float:
    adapter = ReferenceAdapter({"leave_grace": "0.2"})
    await adapter.start()
    t0 = time.perf_counter()
    result = await run_scenario(parsed, adapter, RunSettings())
    elapsed = time.perf_counter() - t0
    await adapter.stop()
    if result.outcome.value != "pass":
        raise SystemExit(f"the bench scenario did not pass: {result.outcome} {result.violations}")
    return elapsed


async def whole_suite() -> tuple[float, int, dict]:
    scenarios = load_scenarios(ROOT / "scenarios")
    adapter = ReferenceAdapter({})
    await adapter.start()
    t0 = time.perf_counter()
    run = await run_scenarios(scenarios, adapter, RunSettings())
    elapsed = time.perf_counter() - t0
    await adapter.stop()
    return elapsed, len(scenarios), run.counts()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (CI smoke)")
    args = parser.parse_args(argv)
    reps = 3 if args.quick else 9
    print(
        f"{'steps':>6} {'harness ms':>11} {'direct ms':>10} {'ratio':>7}   (median of {reps}, "
        "interleaved)"
    )
    for rounds in (2, 6) if args.quick else (2, 6, 20):
        ops = program(rounds)
        doc = scenario(ops)
        parsed = scenario_from_dict(doc)  # parsing and validating the file is not run time
        h, d = [], []
        for _ in range(reps):  # interleaved, so load on the machine hits both sides alike
            h.append(asyncio.run(harnessed(parsed)))
            d.append(asyncio.run(direct(ops)))
        hm, dm = statistics.median(h), statistics.median(d)
        print(f"{len(doc['steps']):>6} {hm * 1000:>11.1f} {dm * 1000:>10.1f} {hm / dm:>6.1f}x")
    print("target: ratio <= 3x")
    elapsed, count, counts = asyncio.run(whole_suite())
    verdict = "met" if elapsed < 60 else "MISSED"
    print(
        f"whole suite against reference: {count} scenarios in {elapsed:.1f} s "
        f"({', '.join(f'{k} {v}' for k, v in counts.items() if v)}); target < 60 s: {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
