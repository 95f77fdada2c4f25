"""The reference server's own work per PRESENCE frame, in process, without the socket.

Run `python bench/profile_enter.py [--loop asyncio|uvloop] [--frames N] [--profile] [--compare]`.

`bench_server.py` (a) compares the enter -> ACK round trip with a bare echo of the same run;
its server CPU per operation holds everything: the socket, the loop, aiohttp's frame reading,
and the server's own handling. This script isolates the last: one attached connection of a
real `PresenceServer` whose transport is replaced by a sink, fed N PRESENCE frames (ENTER and
LEAVE in turn) straight into the frame handler (`RealtimeProtocol.on_text`), with the direct
writes batched as `Transport.handle` batches them. It prints the CPU per frame and, with
`--profile`, the functions that take it. These frames are the common PRESENCE frame, which the
server handles on its fast path (`RealtimeProtocol._presence_fast`); `--compare` also feeds
them through the general path (`_on_presence`, the path of every other frame) and prints both
figures, side by side in one run. The figure is the same on asyncio and uvloop: uvloop
makes the loop and the transport cheaper (which is all a bare echo is), not this work, so the
enter -> ACK / echo ratio of (a) is higher on uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class Sink:
    """A transport that accepts every write (the direct-write path needs these four)."""

    def __init__(self) -> None:
        self.writes = 0
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.bytes += len(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        pass


async def measure(
    frames: int, profiler: cProfile.Profile | None, general: bool = False
) -> tuple[float, Sink]:
    """CPU seconds per frame handled, and the sink that got the server's writes (`general`:
    without the fast path)."""
    from presence_conformance.reference_impl.server import PresenceServer, ServerConfig
    from presence_conformance.reference_impl.server.transport import _Batch
    from websockets.asyncio.client import connect

    server = PresenceServer(
        ServerConfig(heartbeat_interval=0, max_idle_interval=0, leave_grace=0.5)
    )
    _, port = await server.start("127.0.0.1", 0)
    try:
        query = urlencode({"key": server.default_key, "format": "json", "clientId": "bench"})
        ws = await connect(f"ws://127.0.0.1:{port}/?{query}", compression=None)
        await ws.recv()  # CONNECTED
        await ws.send(json.dumps({"action": 10, "channel": "bench"}))
        while not str(await ws.recv()).startswith('{"action":11'):
            pass
        realtime = server.realtime
        if general:
            realtime._presence_fast = lambda conn, frame: False  # type: ignore[method-assign]
        [conn] = list(realtime.connections.values())
        sink = Sink()
        conn.transport = sink
        texts = [
            json.dumps(
                {
                    "action": 14,
                    "channel": "bench",
                    "msgSerial": n,
                    "presence": [{"action": 2 if n % 2 == 0 else 3, "data": "bench-data"}],
                },
                separators=(",", ":"),
            )
            for n in range(frames)
        ]
        transport, batch = realtime.transport, _Batch()
        if profiler is not None:
            profiler.enable()
        started = time.process_time()
        for text in texts:  # as Transport.handle does for each frame received
            transport._held = batch
            try:
                realtime.on_text(conn, text)
            finally:
                transport._held = None
                batch.flush()
        spent = time.process_time() - started
        if profiler is not None:
            profiler.disable()
        await ws.close()
        return spent / frames, sink
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--profile", action="store_true", help="print a cProfile top 30")
    parser.add_argument(
        "--compare", action="store_true", help="also without the fast path (the general path)"
    )
    args = parser.parse_args(argv)
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    profiler = cProfile.Profile() if args.profile else None
    with asyncio.Runner(loop_factory=factory) as runner:
        per_frame, sink = runner.run(measure(args.frames, profiler))
    print(
        f"[{args.loop}] {args.frames} PRESENCE frames handled in process: "
        f"{per_frame * 1e6:.1f} us CPU per frame; {sink.writes} writes, "
        f"{sink.bytes / max(sink.writes, 1):.0f} bytes each (event + ACK)"
    )
    if args.compare:
        with asyncio.Runner(loop_factory=factory) as runner:
            general, _ = runner.run(measure(args.frames, None, general=True))
        print(
            f"[{args.loop}] the same frames on the general path: {general * 1e6:.1f} us CPU per "
            f"frame; the fast path takes {per_frame / general:.2f}x of that"
        )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
