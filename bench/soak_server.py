"""Soak test of the reference server: many short connections over many channel names, loopback.

Run `python bench/soak_server.py [--cycles 10000] [--channels 3] [--workers 8] [--max-seconds 600]`.
The server runs as `presence-conformance serve` in a child process on 127.0.0.1 (a free port),
with a short history retention (`--history-max-age`, default 2 s) so that the channels that held
members are freed within the run too. Each cycle is one connection: connect (CONNECTED),
attach `--channels` channels whose names are never used again, enter presence on the first,
then CLOSE and time the CLOSED. Workers run the cycles concurrently on one loop.

Printed per thousand cycles: the server's RSS (from /proc), its channel count as seen through
its memory, and the p50 / p99 CLOSE latency; at the end the ratios last thousand / first
thousand for RSS and for p50 CLOSE latency (flat: close to 1; before issue 13 CLOSE walked every
channel ever attached and grew with them), and the RSS ratio over the second half. The RSS of the
first half grows while the server's bounded stores fill (the frame log keeps the frames of the
last 5,000 connections) and the allocator warms up; from then on it stays flat. Exit 0 when both ratios are below `--max-ratio`
(default 1.5), 1 otherwise, 2 on a usage error. Bounded: the run stops after `--max-seconds`
whatever the count (exit 1 then).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
KEY = "appid.keyid:secret"


def rss_kib(pid: int) -> int:
    """Resident set size of process `pid` in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_server(history_max_age: float) -> tuple[subprocess.Popen[str], int]:
    """`serve` on a free loopback port; returns the process and the port."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "presence_conformance.reference_impl.server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--leave-grace",
            "0.2",
            "--history-max-age",
            str(history_max_age),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ws://127.0.0.1:" not in line:
        proc.kill()
        raise SystemExit(f"soak: the server did not start: {line!r}")
    return proc, int(line.split("ws://127.0.0.1:")[1].split()[0])


async def cycle(port: int, number: int, channels: int) -> float:
    """One connection's life; returns the CLOSE -> CLOSED time in seconds."""
    query = urlencode({"key": KEY, "clientId": f"soak{number}", "format": "json"})
    async with connect(f"ws://127.0.0.1:{port}/?{query}", ping_interval=None) as ws:
        frame = json.loads(await ws.recv())
        if frame.get("action") != 4:
            raise RuntimeError(f"cycle {number}: expected CONNECTED, got {frame}")
        names = [f"soak-{number}-{i}" for i in range(channels)]
        for name in names:
            await ws.send(json.dumps({"action": 10, "channel": name}))
        attached = 0
        while attached < channels:
            if json.loads(await ws.recv()).get("action") == 11:
                attached += 1
        await ws.send(
            json.dumps(
                {"action": 14, "channel": names[0], "msgSerial": 0, "presence": [{"action": 2}]}
            )
        )
        while json.loads(await ws.recv()).get("action") != 1:  # ACK
            pass
        started = time.perf_counter()
        await ws.send(json.dumps({"action": 7}))
        while json.loads(await ws.recv()).get("action") != 8:  # CLOSED
            pass
        return time.perf_counter() - started


def block_size(cycles: int) -> int:
    """Cycles per row: a thousand, or a tenth of a smaller run."""
    return max(1, min(1000, cycles // 10))


async def soak(args: argparse.Namespace, port: int, pid: int) -> list[dict[str, float]]:
    """Run the cycles; one row of figures per thousand (or per tenth of a smaller run)."""
    block = block_size(args.cycles)
    latencies: list[float] = [0.0] * args.cycles
    counter = iter(range(args.cycles))
    deadline = time.monotonic() + args.max_seconds
    rows: list[dict[str, float]] = []
    done = 0

    async def worker() -> None:
        nonlocal done
        for number in counter:
            if time.monotonic() > deadline:
                return
            latencies[number] = await cycle(port, number, args.channels)
            done += 1

    tasks = [asyncio.create_task(worker()) for _ in range(args.workers)]
    next_row = block
    while not all(t.done() for t in tasks):
        await asyncio.sleep(0.05)
        while done >= next_row:
            window = sorted(latencies[next_row - block : next_row])
            rows.append(
                {
                    "cycles": next_row,
                    "rss_kib": rss_kib(pid),
                    "p50_ms": statistics.median(window) * 1000,
                    "p99_ms": window[int(0.99 * (len(window) - 1))] * 1000,
                }
            )
            print(
                f"{next_row:>6} cycles  rss {rows[-1]['rss_kib'] / 1024:7.1f} MiB  "
                f"CLOSE p50 {rows[-1]['p50_ms']:6.2f} ms  p99 {rows[-1]['p99_ms']:6.2f} ms",
                flush=True,
            )
            next_row += block
    for task in tasks:
        task.result()
    if done < args.cycles:
        print(f"soak: stopped after {done} of {args.cycles} cycles (--max-seconds)")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=10000)
    parser.add_argument("--channels", type=int, default=3, help="channels attached per cycle")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--history-max-age", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--max-ratio", type=float, default=1.5)
    args = parser.parse_args(argv)
    if args.cycles < 20 or args.channels < 1 or args.workers < 1:
        parser.error("--cycles >= 20, --channels >= 1 and --workers >= 1")
    proc, port = start_server(args.history_max_age)
    started = time.monotonic()
    try:
        rows = asyncio.run(soak(args, port, proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    elapsed = time.monotonic() - started
    if len(rows) < 2:
        print("soak: too few cycles completed to compare")
        return 1
    first, middle, last = rows[0], rows[len(rows) // 2 - 1], rows[-1]
    rss_ratio = last["rss_kib"] / first["rss_kib"]
    rss_second_half = last["rss_kib"] / middle["rss_kib"]
    close_ratio = last["p50_ms"] / max(first["p50_ms"], 1e-6)
    print(
        f"soak: {last['cycles']} cycles x {args.channels} channels in {elapsed:.1f} s; "
        f"last/first block: RSS {rss_ratio:.2f}x ({first['rss_kib'] / 1024:.1f} -> "
        f"{last['rss_kib'] / 1024:.1f} MiB), CLOSE p50 {close_ratio:.2f}x "
        f"({first['p50_ms']:.2f} -> {last['p50_ms']:.2f} ms); "
        f"RSS over the second half {rss_second_half:.2f}x"
    )
    complete = len(rows) == args.cycles // block_size(args.cycles)
    flat = complete and rss_ratio < args.max_ratio and close_ratio < args.max_ratio
    print("soak: flat" if flat else "soak: NOT flat (or incomplete)")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
