"""Benchmark of the reference presence server, each figure beside a bare baseline of the same run.

Run `python bench/bench_server.py [--quick] [--loop asyncio|uvloop|both] [--profile-server FILE]`.
The server runs in a child process (the reference server as shipped: `PresenceServer` on aiohttp,
on stock asyncio, or on uvloop with `--loop uvloop`, as `presence-conformance serve` runs when
the `[fast]` extra is installed) next to a
bare aiohttp WebSocket app (echo and broadcast, the same `WebSocketResponse` settings) in the same
process and loop; the clients run in this process, on one loop, with the same client code for
both sides of each ratio (`websockets` without compression for (a); for (b) lean raw-socket
subscribers that only split and count frames, so that a thousand client objects on one core do
not hide the server). So each ratio compares the presence server with the least an aiohttp
WebSocket server can do on this machine, measured side by side (interleaved rounds) in one run.

(a) enter -> ACK round trip of one client (an attached connection sends PRESENCE ENTER and waits
    for the ACK; then LEAVE, unmeasured) vs a bare echo round trip of a frame of the same size.
    Target: <= 2x (p50).
(b) one presence event fanned out to N subscribers (1,000; `--quick` 200): time from the ENTER
    (or LEAVE) sent to the last subscriber holding the event, vs the bare server broadcasting the
    very same bytes to N WebSocket clients (one `send_str` per client). Target: <= 1.5x (p50):
    the server encodes each event once.
(c) a late joiner's SYNC of 100 / 1,000 / 10,000 members (`--quick` 100 / 1,000): time from
    ATTACH to the last SYNC page, and the bytes of ATTACHED + SYNC; bytes/member and
    time/member show that the growth is linear.
(d) N connections (1,000; `--quick` 100) of the harness's Ably client (`presence_conformance.harness.ably_client`)
    enter one channel concurrently: every client's get() (its local presence map) must converge
    to N members and REST history must hold the N enters; the time of each phase is reported.
    All N clients share this process, which reads N * (N + 1) event frames: the CPU of both
    processes is shown, to tell which side bounds the time.

`--loop both` runs the selected benches once on each loop (a server process each, the bare
baseline on the same loop as the presence server, so each ratio stays like for like), prints
both summaries, and then what uvloop changes: the presence server's and the baseline's figures
on asyncio and on uvloop side by side.

`bench/profile_enter.py` isolates the server's own work per PRESENCE frame (no socket, no loop
in between): the same on both loops, which is why the enter -> ACK / echo ratio of (a) is
higher on uvloop, whose gains are all in the part a bare echo consists of.

The figures of the last measurement, and what bounds the ratio of (a) on uvloop, are in
`bench/README.md`.

Server CPU per operation (the child process's `time.process_time()` before and after) is shown
next to the wall-clock figures, since on a small machine the clients' own work is part of every
wall-clock figure. The process exits 0 whatever the figures; the verdicts are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import multiprocessing
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.client import ClientConnection, connect

TARGET_RTT = 2.0
TARGET_FANOUT = 1.5
WS_OPTIONS: dict[str, Any] = {
    "compression": None,
    "ping_interval": None,
    "max_size": None,
    "open_timeout": 60,
    "close_timeout": 2,
}
CONNECT_CONCURRENCY = 50
WAIT = 60.0  # seconds any single wait may take before the bench gives up
CROWD_WAIT = 900.0  # (d): each client reads every event before its ACK, n^2 frames in all


# -- the server process ---------------------------------------------------------------------------


def _bare_app() -> Any:
    """Bare aiohttp WebSocket endpoints: `/echo` sends each text frame back; `/fan` sends each
    text frame it receives, as it is, to every connected `/fan` client (the sender included)."""
    from aiohttp import WSMsgType, web

    clients: set[web.WebSocketResponse] = set()

    def response() -> web.WebSocketResponse:
        # the same settings as PresenceServer._ws_handler
        return web.WebSocketResponse(max_msg_size=4 << 20, timeout=2.0)

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = response()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    async def fan(request: web.Request) -> web.WebSocketResponse:
        ws = response()
        await ws.prepare(request)
        clients.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    for client in list(clients):
                        await client.send_str(msg.data)
        finally:
            clients.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/fan", fan)
    return app


def _serve(pipe: Connection, profile: str | None, loop: str = "asyncio") -> None:
    """Child process: the reference server and the bare app on one loop until told to stop."""
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_serve_async(pipe))
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)


async def _serve_async(pipe: Connection) -> None:
    from aiohttp import web
    from presence_conformance.reference_impl.server import PresenceServer, ServerConfig

    server = PresenceServer(
        ServerConfig(heartbeat_interval=0, max_idle_interval=0, leave_grace=0.5)
    )
    host, port = await server.start("127.0.0.1", 0)
    runner = web.AppRunner(_bare_app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    bare_port = int(runner.addresses[0][1])
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def control() -> None:  # answers the parent on a thread; the loop stays free
        while True:
            try:
                command = pipe.recv()
            except EOFError:
                command = "stop"
            if command == "cpu":
                pipe.send(time.process_time())
            else:
                loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))
                return

    pipe.send({"host": host, "port": port, "bare_port": bare_port, "key": server.default_key})
    threading.Thread(target=control, daemon=True).start()
    await stop
    await server.stop()
    await runner.cleanup()
    pipe.send("stopped")


class ServerProcess:
    """The child process running the servers; `cpu()` reads its CPU seconds."""

    def __init__(self, profile: str | None = None, loop: str = "asyncio") -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.loop = loop
        self.process = ctx.Process(target=_serve, args=(child, profile, loop), daemon=True)
        self.process.start()
        if not self.pipe.poll(60):
            raise RuntimeError("the server process did not start within 60 s")
        info = self.pipe.recv()
        self.host: str = info["host"]
        self.port: int = info["port"]
        self.bare_port: int = info["bare_port"]
        self.key: str = info["key"]
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, client_id: str | None = None) -> str:
        query = {"key": self.key, "format": "json"}
        if client_id is not None:
            query["clientId"] = client_id
        return f"ws://{self.endpoint}/?{urlencode(query)}"

    def bare_url(self, path: str) -> str:
        return f"ws://{self.host}:{self.bare_port}/{path}"

    def cpu(self) -> float:
        with self._lock:
            self.pipe.send("cpu")
            return float(self.pipe.recv())

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.pipe.send("stop")
            if self.pipe.poll(30):
                self.pipe.recv()
        self.process.join(30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


# -- client helpers -----------------------------------------------------------------------------


async def ws_open(url: str) -> ClientConnection:
    return await connect(url, **WS_OPTIONS)


async def recv_until(ws: ClientConnection, prefix: str) -> str:
    """Frames until one whose text starts with `prefix` (server frames are compact JSON with
    `action` first, so `{"action":1,` is an ACK), within WAIT seconds."""
    async with asyncio.timeout(WAIT):
        return await next_with(ws, prefix)


async def next_with(ws: ClientConnection, prefix: str) -> str:
    """Frames until one whose text starts with `prefix`, without a timeout of its own: the
    timed loops of (a) run under one timeout around the whole loop, since an `asyncio.timeout`
    per frame costs the client ~10 us (a timer armed and cancelled), which would be timed on one
    side of the ratio only."""
    while True:
        text = await ws.recv()
        if isinstance(text, str) and text.startswith(prefix):
            return text


async def attach(ws: ClientConnection, channel: str) -> tuple[float, int, int]:
    """ATTACH and read ATTACHED plus every SYNC page; return (seconds, frames, bytes)."""
    started = time.perf_counter()
    await ws.send(json.dumps({"action": 10, "channel": channel}))
    text = await recv_until(ws, '{"action":11,')
    frames, size = 1, len(text.encode())
    if json.loads(text).get("flags", 0) & 1:
        while True:
            text = await recv_until(ws, '{"action":16,')
            frames, size = frames + 1, size + len(text.encode())
            serial = json.loads(text).get("channelSerial")
            if serial is None or serial.endswith(":"):
                break
    return time.perf_counter() - started, frames, size


async def detach(ws: ClientConnection, channel: str) -> None:
    await ws.send(json.dumps({"action": 12, "channel": channel}))
    await recv_until(ws, '{"action":13,')


def presence_frame(
    channel: str, serial: int, action: int, data: Any = None, client_id: str | None = None
) -> str:
    item: dict[str, Any] = {"action": action}
    if data is not None:
        item["data"] = data
    if client_id is not None:
        item["clientId"] = client_id
    return json.dumps(
        {"action": 14, "channel": channel, "presence": [item], "msgSerial": serial},
        separators=(",", ":"),
    )


async def open_many(urls: list[str]) -> list[ClientConnection]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(url: str) -> ClientConnection:
        async with gate:
            ws = await ws_open(url)
            if "/?" in url:  # the presence server says CONNECTED first
                await recv_until(ws, '{"action":4,')
            return ws

    return list(await asyncio.gather(*(one(u) for u in urls)))


async def close_many(sockets: list[ClientConnection]) -> None:
    async def one(ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)

    await asyncio.gather(*(one(ws) for ws in sockets))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Summary:
    """A line of the final table."""

    bench: str
    measure: str
    presence: str
    baseline: str
    ratio: str
    target: str
    verdict: str


@dataclass
class Report:
    """What the run printed as it went, and the final summary rows."""

    rows: list[Summary] = field(default_factory=list)
    loop: str = "asyncio"
    figures: dict[str, float] = field(default_factory=dict)  # for the loop comparison

    def section(self, title: str) -> None:
        print(f"\n== [{self.loop}] {title} ==", flush=True)

    def line(self, text: str) -> None:
        print(text, flush=True)

    def table(self) -> None:
        header = ("bench", "measure", "presence", "baseline", "ratio", "target", "verdict")
        rows = [header] + [
            (r.bench, r.measure, r.presence, r.baseline, r.ratio, r.target, r.verdict)
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        print(f"\n== summary ({self.loop}) ==")
        for row in rows:
            print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        print(flush=True)


# -- (a) enter -> ACK round trip vs echo ---------------------------------------------------------


async def bench_rtt(server: ServerProcess, report: Report, samples: int, rounds: int) -> None:
    report.section(
        f"(a) enter -> ACK round trip vs bare echo (1 client; {rounds} interleaved "
        f"rounds x {samples} samples)"
    )
    channel = "bench-rtt"
    ws = (await open_many([server.url("rtt")]))[0]
    echo = await ws_open(server.bare_url("echo"))
    await attach(ws, channel)
    serial = 0
    enter_text = presence_frame(channel, 0, 2, "rtt-data")
    payload = "x" * len(enter_text)  # an echo frame of the same size
    enter_times: list[float] = []
    echo_times: list[float] = []
    cpu = {"enter": 0.0, "echo": 0.0}

    # Both sides run the same client code: send, then read frames with `next_with` (a
    # prefix test per frame), under one timeout around the whole loop.
    async def enters(count: int) -> None:
        nonlocal serial
        async with asyncio.timeout(WAIT + count * 1.0):
            for _ in range(count):
                text = presence_frame(channel, serial, 2, "rtt-data")
                started = time.perf_counter()
                await ws.send(text)
                # the server broadcasts the event (the sender included) before it ACKs
                await next_with(ws, '{"action":14,')
                await next_with(ws, '{"action":1,')
                enter_times.append(time.perf_counter() - started)
                serial += 1
                await ws.send(presence_frame(channel, serial, 3))
                await next_with(ws, '{"action":14,')
                await next_with(ws, '{"action":1,')
                serial += 1

    async def echoes(count: int) -> None:
        async with asyncio.timeout(WAIT + count * 1.0):
            for _ in range(count):
                started = time.perf_counter()
                await echo.send(payload)
                await next_with(echo, "x")
                echo_times.append(time.perf_counter() - started)

    await enters(20)  # warm up both
    await echoes(20)
    enter_times.clear()
    echo_times.clear()
    for _ in range(rounds):
        before = server.cpu()
        await echoes(samples)
        middle = server.cpu()
        await enters(samples)
        after = server.cpu()
        cpu["echo"] += middle - before
        cpu["enter"] += (after - middle) / 2  # each sample is an enter and a leave
    await close_many([ws, echo])
    n = samples * rounds
    e50, b50 = pct(enter_times, 0.5), pct(echo_times, 0.5)
    report.line(
        f"{'measure':<16}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'server CPU/op us':>18}"
    )
    for name, values, seconds in (
        ("bare echo", echo_times, cpu["echo"]),
        ("enter -> ACK", enter_times, cpu["enter"]),
    ):
        report.line(
            f"{name:<16}{pct(values, 0.5) * 1e3:>10.3f}{pct(values, 0.9) * 1e3:>10.3f}"
            f"{pct(values, 0.99) * 1e3:>10.3f}{seconds / n * 1e6:>18.1f}"
        )
    ratio = e50 / b50
    cpu_ratio = cpu["enter"] / cpu["echo"] if cpu["echo"] else float("nan")
    report.figures.update(
        {
            "enter->ACK p50 ms": e50 * 1e3,
            "bare echo p50 ms": b50 * 1e3,
            "enter->ACK server CPU us": cpu["enter"] / n * 1e6,
            "bare echo server CPU us": cpu["echo"] / n * 1e6,
        }
    )
    report.line(
        f"ratio p50 {ratio:.2f}x (target <= {TARGET_RTT:g}x); server CPU ratio {cpu_ratio:.2f}x"
    )
    report.rows.append(
        Summary(
            "(a) enter->ACK RTT",
            "p50 round trip",
            f"{e50 * 1e3:.3f} ms",
            f"{b50 * 1e3:.3f} ms echo",
            f"{ratio:.2f}x",
            f"<= {TARGET_RTT:g}x",
            "ok" if ratio <= TARGET_RTT else "MISSED",
        )
    )
    report.rows.append(
        Summary(
            "(a) enter->ACK RTT",
            "server CPU per op",
            f"{cpu['enter'] / n * 1e6:.1f} us",
            f"{cpu['echo'] / n * 1e6:.1f} us echo",
            f"{cpu_ratio:.2f}x",
            "-",
            "info",
        )
    )


# -- (b) fan-out vs bare broadcast -----------------------------------------------------------------


class Counter:
    """Counts, over many sockets, the frames starting with a prefix; `done` at the target."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.count = 0
        self.target = 0
        self.done = asyncio.Event()

    def reset(self, target: int) -> None:
        self.count, self.target = 0, target
        self.done.clear()

    def hit(self) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set()


class LeanSubscriber(asyncio.Protocol):
    """A minimal WebSocket client for fan-out: the upgrade by hand, then it only splits the
    server's (unmasked) frames and counts the text frames starting with `counter.prefix`.

    One `data_received` per TCP read and a few slicing operations per frame: far cheaper than a
    full client, so that fan-out timings measure the server rather than a thousand client
    objects on one core. The same class receives from both servers of the ratio."""

    def __init__(self, host: str, port: int, path: str, counter: Counter) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.counter = counter
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.inbox: list[bytes] | None = []  # frames kept for `expect` during the setup
        self.waiting: tuple[bytes, asyncio.Future[bytes]] | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.opened.add_done_callback(lambda f: f.cancelled() or f.exception())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(bytes(buffer[:200]).decode("latin-1")))
                return
            del buffer[: end + 4]
            self.upgraded = True
            self.opened.set_result(None)
        prefix = self.counter.prefix
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            header = 2
            if length == 126:
                header, length = 4, int.from_bytes(buffer[2:4], "big")
            elif length == 127:
                header, length = 10, int.from_bytes(buffer[2:10], "big")
            if len(buffer) < header + length:
                return
            if buffer[0] & 0x0F == 1:  # a text frame (the servers send no fragments)
                payload = buffer[header : header + 6 + len(prefix)]
                if payload.startswith(prefix):
                    self.counter.hit()
                if self.inbox is not None:
                    self.inbox.append(bytes(buffer[header : header + length]))
                    self._match()
            del buffer[: header + length]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the upgrade: {exc}"))

    def send(self, text: str) -> None:
        """A masked text frame (mask 0: the payload goes as it is)."""
        payload = text.encode()
        assert len(payload) < 126 and self.transport is not None
        self.transport.write(bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload)

    def _match(self) -> None:
        if self.waiting is None or self.inbox is None:
            return
        prefix, future = self.waiting
        for index, frame in enumerate(self.inbox):
            if frame.startswith(prefix):
                del self.inbox[: index + 1]
                self.waiting = None
                future.set_result(frame)
                return

    async def expect(self, prefix: bytes) -> bytes:
        """The next kept frame starting with `prefix` (setup only: see `stop_keeping`)."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting = (prefix, future)
        self._match()
        return await asyncio.wait_for(future, WAIT)

    def stop_keeping(self) -> None:
        self.inbox = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def lean_open(server: ServerProcess, path: str, counter: Counter) -> LeanSubscriber:
    loop = asyncio.get_running_loop()
    port = server.port if path.startswith("/?") else server.bare_port
    _, protocol = await loop.create_connection(
        lambda: LeanSubscriber(server.host, port, path, counter), server.host, port
    )
    await asyncio.wait_for(protocol.opened, WAIT)
    return protocol


async def drain(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def bench_fanout(
    server: ServerProcess, report: Report, subscribers: int, events: int
) -> None:
    report.section(
        f"(b) one presence event to {subscribers:,} subscribers vs a bare broadcast "
        f"of the same bytes ({events} events each, interleaved)"
    )
    channel = "bench-fan"
    opened = time.perf_counter()
    counter = Counter(b'{"action":14,')
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def subscriber(i: int) -> LeanSubscriber:
        async with gate:
            query = urlencode({"key": server.key, "format": "json", "clientId": f"s{i}"})
            sub = await lean_open(server, f"/?{query}", counter)
            await sub.expect(b'{"action":4,')
            sub.send(json.dumps({"action": 10, "channel": channel}))
            await sub.expect(b'{"action":11,')
            sub.stop_keeping()
            return sub

    async def bare_subscriber() -> LeanSubscriber:
        async with gate:
            sub = await lean_open(server, "/fan", counter)
            sub.stop_keeping()
            return sub

    subs = list(await asyncio.gather(*(subscriber(i) for i in range(subscribers))))
    bare_subs = list(await asyncio.gather(*(bare_subscriber() for _ in range(subscribers))))
    sender = (await open_many([server.url("sender")]))[0]
    bare_sender = await ws_open(server.bare_url("fan"))
    await attach(sender, channel)
    report.line(
        f"setup: {2 * subscribers + 2:,} connections opened (presence ones attached) in "
        f"{time.perf_counter() - opened:.2f} s; subscribers are lean raw-socket clients "
        "that only split and count frames"
    )

    # one event, to learn the bytes the server broadcasts (the bare server sends the same)
    serial = 0
    counter.reset(2 * subscribers)
    await sender.send(presence_frame(channel, serial, 2, "fan-data"))
    event_text = await recv_until(sender, '{"action":14,')
    serial += 1
    await sender.send(presence_frame(channel, serial, 3))
    await recv_until(sender, '{"action":14,')
    serial += 1
    await asyncio.wait_for(counter.done.wait(), WAIT)
    sender_reader = asyncio.create_task(drain(sender))
    bare_reader = asyncio.create_task(drain(bare_sender))

    presence_times: list[float] = []
    bare_times: list[float] = []
    cpu = {"presence": 0.0, "bare": 0.0}

    async def one_presence() -> None:
        nonlocal serial
        action = 2 if serial % 2 == 0 else 3
        counter.reset(subscribers)
        before = server.cpu()
        started = time.perf_counter()
        await sender.send(
            presence_frame(channel, serial, action, "fan-data" if action == 2 else None)
        )
        await asyncio.wait_for(counter.done.wait(), WAIT)
        presence_times.append(time.perf_counter() - started)
        cpu["presence"] += server.cpu() - before
        serial += 1

    async def one_bare() -> None:
        counter.reset(subscribers)
        before = server.cpu()
        started = time.perf_counter()
        await bare_sender.send(event_text)
        await asyncio.wait_for(counter.done.wait(), WAIT)
        bare_times.append(time.perf_counter() - started)
        cpu["bare"] += server.cpu() - before

    for _ in range(2):  # warm up
        await one_presence()
        await one_bare()
    presence_times.clear()
    bare_times.clear()
    cpu = {"presence": 0.0, "bare": 0.0}
    for _ in range(events):
        await one_presence()
        await asyncio.sleep(0.01)
        await one_bare()
        await asyncio.sleep(0.01)
    for task in (sender_reader, bare_reader):
        task.cancel()
    for sub in subs + bare_subs:
        sub.close()
    await close_many([sender, bare_sender])
    p50, b50 = pct(presence_times, 0.5), pct(bare_times, 0.5)
    report.line(f"event size {len(event_text)} bytes")
    report.line(
        f"{'measure':<22}{'p50 ms':>10}{'p90 ms':>10}{'deliveries/s':>15}"
        f"{'server CPU/event ms':>21}"
    )
    for name, values, seconds in (
        ("bare broadcast", bare_times, cpu["bare"]),
        ("presence fan-out", presence_times, cpu["presence"]),
    ):
        report.line(
            f"{name:<22}{pct(values, 0.5) * 1e3:>10.2f}{pct(values, 0.9) * 1e3:>10.2f}"
            f"{subscribers / pct(values, 0.5):>15,.0f}{seconds / events * 1e3:>21.2f}"
        )
    ratio = p50 / b50
    cpu_ratio = cpu["presence"] / cpu["bare"] if cpu["bare"] else float("nan")
    report.figures.update(
        {
            "fan-out p50 ms": p50 * 1e3,
            "bare broadcast p50 ms": b50 * 1e3,
            "fan-out server CPU ms/event": cpu["presence"] / events * 1e3,
            "bare broadcast server CPU ms/event": cpu["bare"] / events * 1e3,
        }
    )
    report.line(
        f"ratio p50 {ratio:.2f}x (target <= {TARGET_FANOUT:g}x); server CPU ratio {cpu_ratio:.2f}x"
    )
    report.rows.append(
        Summary(
            f"(b) fan-out x{subscribers:,}",
            "p50 last delivery",
            f"{p50 * 1e3:.2f} ms",
            f"{b50 * 1e3:.2f} ms bare",
            f"{ratio:.2f}x",
            f"<= {TARGET_FANOUT:g}x",
            "ok" if ratio <= TARGET_FANOUT else "MISSED",
        )
    )
    report.rows.append(
        Summary(
            f"(b) fan-out x{subscribers:,}",
            "server CPU per event",
            f"{cpu['presence'] / events * 1e3:.2f} ms",
            f"{cpu['bare'] / events * 1e3:.2f} ms bare",
            f"{cpu_ratio:.2f}x",
            "-",
            "info",
        )
    )


# -- (c) SYNC of a late joiner ---------------------------------------------------------------------


async def populate(ws: ClientConnection, channel: str, members: int, batch: int = 100) -> None:
    """Enter `members` clientIds from a wildcard connection, `batch` per PRESENCE frame."""
    await attach(ws, channel)
    serial = 0
    for first in range(0, members, batch):
        items = [
            {"action": 2, "clientId": f"m{i:05d}", "data": f"member data {i:05d}"}
            for i in range(first, min(members, first + batch))
        ]
        await ws.send(
            json.dumps({"action": 14, "channel": channel, "presence": items, "msgSerial": serial})
        )
        await recv_until(ws, '{"action":1,')
        serial += 1


async def bench_sync(server: ServerProcess, report: Report, sizes: list[int], repeats: int) -> None:
    report.section(f"(c) a late joiner's SYNC ({repeats} attaches per size, median)")
    wildcard = (await open_many([server.url("*")]))[0]
    joiner = (await open_many([server.url("late")]))[0]
    rows: list[tuple[int, float, int, int, float]] = []
    for size in sizes:
        channel = f"bench-sync-{size}"
        await populate(wildcard, channel, size)
        times: list[float] = []
        cpus: list[float] = []
        frames = nbytes = 0
        for _ in range(repeats + 1):
            before = server.cpu()
            seconds, frames, nbytes = await attach(joiner, channel)
            cpus.append(server.cpu() - before)
            times.append(seconds)
            await detach(joiner, channel)
        times, cpus = times[1:], cpus[1:]  # the first attach warms up
        rows.append((size, statistics.median(times), nbytes, frames, statistics.median(cpus)))
        # leave the channel empty (one frame per batch), so the next sizes are not slowed
        await wildcard.send(json.dumps({"action": 12, "channel": channel}))
        await recv_until(wildcard, '{"action":13,')
    await close_many([wildcard, joiner])
    report.line(
        f"{'members':>8}{'time ms':>10}{'frames':>8}{'bytes':>11}{'bytes/member':>14}"
        f"{'us/member':>11}{'server CPU ms':>15}{'CPU us/member':>15}"
    )
    for size, seconds, nbytes, frames, cpu in rows:
        report.line(
            f"{size:>8,}{seconds * 1e3:>10.2f}{frames:>8}{nbytes:>11,}"
            f"{nbytes / size:>14.1f}{seconds / size * 1e6:>11.2f}{cpu * 1e3:>15.2f}"
            f"{cpu / size * 1e6:>15.2f}"
        )
    per_member = [s / n for n, s, *_ in rows]
    cpu_per_member = [c / n for n, *_, c in rows]
    byte_rates = [b / n for n, _, b, *_ in rows]
    mid = 1 if len(rows) > 2 else 0
    time_growth = per_member[-1] / per_member[mid]
    cpu_growth = cpu_per_member[-1] / cpu_per_member[mid] if cpu_per_member[mid] else 1.0
    byte_spread = max(byte_rates) / min(byte_rates)
    linear = cpu_growth <= 1.5 and byte_spread <= 1.1
    report.line(
        f"linear: bytes/member varies {byte_spread:.2f}x over the sizes; from "
        f"{rows[mid][0]:,} to {rows[-1][0]:,} members the server's CPU per member grows "
        f"{cpu_growth:.2f}x and the wall-clock time per member {time_growth:.2f}x (wall "
        "clock includes the joiner's decoding and whatever else the machine runs; the "
        "smallest size is dominated by the fixed round trip)"
    )
    for size, seconds, nbytes, _frames, _cpu in rows:
        report.rows.append(
            Summary(
                f"(c) SYNC {size:,}",
                "ATTACH -> last SYNC",
                f"{seconds * 1e3:.2f} ms",
                f"{nbytes:,} B",
                f"{seconds / size * 1e6:.2f} us/m",
                "linear",
                f"{nbytes / size:.0f} B/member",
            )
        )
    report.rows.append(
        Summary(
            "(c) SYNC growth",
            "server CPU/member, largest vs mid",
            f"{cpu_growth:.2f}x",
            f"bytes/member {byte_spread:.2f}x",
            f"time/m {time_growth:.2f}x",
            "<= 1.5x",
            "ok" if linear else "MISSED",
        )
    )


# -- (d) N connections enter one channel ---------------------------------------------------------


async def bench_crowd(server: ServerProcess, report: Report, connections: int) -> None:
    from presence_conformance.harness.ably_client import RealtimeConnection, RestClient

    report.section(
        f"(d) {connections:,} connections (presence_conformance.harness.ably_client) enter one channel "
        "concurrently"
    )
    channel = "bench-crowd"
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    started = time.perf_counter()

    async def connect_one(i: int) -> RealtimeConnection:
        async with gate:
            conn = await RealtimeConnection.connect(
                server.endpoint, server.key, f"c{i:05d}", timeout=CROWD_WAIT
            )
            await conn.channel(channel).presence.get()  # attach, empty SYNC
            return conn

    conns = list(await asyncio.gather(*(connect_one(i) for i in range(connections))))
    t_connected = time.perf_counter()
    before, client_before = server.cpu(), time.process_time()
    await asyncio.gather(*(c.channel(channel).presence.enter(f"d{i}") for i, c in enumerate(conns)))
    t_acked = time.perf_counter()

    def converged() -> int:
        return sum(len(c.channel(channel).presence.members) == connections for c in conns)

    deadline = time.monotonic() + CROWD_WAIT
    while converged() < connections:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {converged()} of {connections} clients converged")
        await asyncio.sleep(0.01)
    t_converged = time.perf_counter()
    cpu, client_cpu = server.cpu() - before, time.process_time() - client_before
    gets = await asyncio.gather(*(c.channel(channel).presence.get() for c in conns))
    assert all(len(members) == connections for members in gets)
    assert all(
        sorted(m.client_id for m in members) == [f"c{i:05d}" for i in range(connections)]
        for members in gets[:3]
    )
    t_gets = time.perf_counter()
    async with RestClient(server.endpoint, server.key, timeout=WAIT) as rest:
        page: Any = await rest.presence_history(channel, limit=1000, direction="forwards")
        enters = 0
        while page is not None:
            enters += sum(1 for m in page.items if m.action.value == "enter")
            page = await page.next() if page.has_next() else None
    t_history = time.perf_counter()
    # abrupt drops: a graceful close of each would fan out n^2 / 2 more leaves
    await asyncio.gather(*(c.drop() for c in conns), return_exceptions=True)
    ok = enters == connections
    report.line(f"connect + attach {connections:,}: {t_connected - started:.2f} s")
    report.line(
        f"all enters ACKed: {(t_acked - t_connected) * 1e3:.0f} ms after the first was sent"
    )
    report.line(
        f"every client's presence map holds {connections:,} members: "
        f"{(t_converged - t_connected) * 1e3:.0f} ms after the first enter "
        f"({connections * (connections + 1):,} event deliveries; CPU: server "
        f"{cpu:.2f} s, the clients' process {client_cpu:.2f} s)"
    )
    report.line(
        f"{connections:,} get() calls all return {connections:,} members: "
        f"{(t_gets - t_converged) * 1e3:.0f} ms"
    )
    report.line(
        f"REST history holds {enters:,} enters (expected {connections:,}): "
        f"{(t_history - t_gets) * 1e3:.0f} ms"
    )
    report.rows.append(
        Summary(
            f"(d) crowd x{connections:,}",
            "enter -> all maps converged",
            f"{(t_converged - t_connected):.2f} s",
            f"ACKs {(t_acked - t_connected):.2f} s",
            "-",
            f"history {connections:,}",
            "ok" if ok else f"MISSED: {enters} enters",
        )
    )


# -- main -------------------------------------------------------------------------------------------


async def run_all(server: ServerProcess, args: argparse.Namespace) -> Report:
    report = Report(loop=server.loop)
    benches: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("a", lambda: bench_rtt(server, report, args.samples, args.rounds)),
        ("b", lambda: bench_fanout(server, report, args.subscribers, args.events)),
        ("c", lambda: bench_sync(server, report, args.sync_sizes, args.sync_repeats)),
        ("d", lambda: bench_crowd(server, report, args.connections)),
    ]
    for name, bench in benches:
        if name in args.only:
            await bench()
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a CI smoke run")
    parser.add_argument("--only", default="abcd", help="which benches to run, e.g. 'ab'")
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop", "both"],
        default="asyncio",
        help="the server process's event loop (both: every bench on each, then the comparison)",
    )
    parser.add_argument(
        "--profile-server",
        metavar="FILE",
        help="run the server process under cProfile and write the stats here",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.rounds = 100, 2
        args.subscribers, args.events = 200, 8
        args.sync_sizes, args.sync_repeats = [100, 1000], 3
        args.connections = 100
    else:
        args.samples, args.rounds = 500, 4
        args.subscribers, args.events = 1000, 30
        args.sync_sizes, args.sync_repeats = [100, 1000, 10000], 5
        args.connections = 1000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    if "uvloop" in loops:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            print("bench_server: --loop uvloop needs uvloop (pip install -e '.[fast]')")
            return 2
    print(
        f"bench_server: python {sys.version.split()[0]}, {multiprocessing.cpu_count()} CPU(s), "
        f"{'quick' if args.quick else 'full'} run on {' and '.join(loops)}; server in a child "
        "process, clients here",
        flush=True,
    )
    reports: list[Report] = []
    for loop in loops:
        server = ServerProcess(args.profile_server if len(loops) == 1 else None, loop)
        try:
            reports.append(asyncio.run(run_all(server, args)))
        finally:
            server.stop()
    for report in reports:
        report.table()
    if len(reports) == 2:
        print_loop_comparison(*reports)
    return 0


def print_loop_comparison(plain: Report, fast: Report) -> None:
    """What uvloop changes: each figure on asyncio and on uvloop, and the ratios to the bare
    baseline on each (uvloop speeds the baseline up too, so a ratio can grow while every time
    shrinks)."""
    print("== what uvloop changes (server process on asyncio -> on uvloop) ==")
    for name, value in plain.figures.items():
        other = fast.figures.get(name)
        if other is None:
            continue
        change = f"{other / value:.2f}x" if value else "-"
        print(f"{name:<36}{value:>10.3f} -> {other:>10.3f}  ({change})")
    for label, top, base in (
        ("enter->ACK / echo", "enter->ACK p50 ms", "bare echo p50 ms"),
        ("fan-out / bare broadcast", "fan-out p50 ms", "bare broadcast p50 ms"),
    ):
        if all(k in r.figures for r in (plain, fast) for k in (top, base)):
            print(
                f"{'ratio ' + label:<36}{plain.figures[top] / plain.figures[base]:>9.2f}x -> "
                f"{fast.figures[top] / fast.figures[base]:>9.2f}x"
            )
    print(
        "uvloop replaces the event loop and its transports (libuv): each socket read, write and "
        "callback costs less, for the presence server and the bare baseline alike; the server's "
        "own work per frame (decoding, the model, encoding) is unchanged.",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
