"""Conforming variants of the reference server: behaviours the Ably specification allows but the
reference does not show by default, each switched on by name (`ServerConfig.variants`,
`serve --variant NAME`), with their randomness drawn from `ServerConfig.variant_seed`.

The suite is judged against servers it never sees; a check that passes only because the
reference happens to behave one way is a false alarm waiting for another server. Each variant
is one such other way, and the packaged suite must pass with every one of them on
(`tests/reference_impl/server/test_server_variants.py`, `bench/server_variants.py`).

| name | what the server does differently | the spec point that allows it |
|---|---|---|
| `jitter` | frames to a connection are held a random 0-15 ms (frames sent together stay together); one connection's frames keep their order, different connections hear a broadcast at different times | fan-out order across connections is not specified; RTN7 (ACK) only orders one connection |
| `sync-shuffle` | SYNC members in a random order | RTP18: a SYNC is the member list, in no given order |
| `sync-pages` | SYNC pages of random sizes (1 to `sync_page_size`), cursors opaque strings | RTP18a/b: only `<sync id>:<cursor>` and the empty final cursor are relied on |
| `sync-no-cursor` | a sync that fits one page is sent, half the time, without `channelSerial` | RTP18c |
| `sync-empty` | attaching to a channel without members still sets HAS_PRESENCE and sends one empty SYNC | RTP1: the flag does not imply members; the sync may be empty |
| `resync` | after presence activity, at a random later moment, a complete SYNC of the channel to every subscriber | RTP18: the server may sync at any point once attached |
| `id-shapes` | connection ids, sync ids and channel serials of other shapes and lengths; synthesized leave ids of another form | TR4c/TR4d/TP3a: opaque strings; RTP2b1/RTP2b2 rely only on `connId:msgSerial:index` of published ids and on a synthesized id not starting with its connectionId |
| `clock-skew` | the server's clock runs 90 s behind | TP3g: timestamps are the server's; the harness tolerates 5 min of skew |
| `history-pages` | REST presence history pages shorter than `limit` (with a `next` link) | RSP4b3 / TG: `limit` is an upper bound of a page |
| `ack-batch` | ACKs of consecutive PRESENCEs held up to 3 ms and sent as one ACK with `count` > 1 | RTN7b / TR4g: `msgSerial` with `count` acknowledges a run of messages |
| `split-presence` | the events of one PRESENCE (several members) broadcast one per frame | TR4l / TP3a: each PresenceMessage carries its own id; frames are transport |

None of them changes what the model decides; they change when, in what order across
connections, in what grouping and in what shape the server says it.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import string
from collections.abc import Callable, Iterator
from typing import Any

from presence_conformance.reference_impl.model import IdFactory, PresenceModel
from presence_conformance.reference_impl.protocol import ProtocolAction
from presence_conformance.reference_impl.server.auth import Authenticator
from presence_conformance.reference_impl.server.codec import decode_json, decode_msgpack
from presence_conformance.reference_impl.server.config import SERVER_VARIANTS, ServerConfig
from presence_conformance.reference_impl.server.connection import Connection
from presence_conformance.reference_impl.server.realtime import (
    FrameRecorder,
    RealtimeProtocol,
)
from presence_conformance.reference_impl.server.transport import FrameHandler, Transport
from presence_conformance.reference_impl.server.wire import wire_presence
from presence_conformance.reference_impl.types import PresenceMessage

VARIANTS: dict[str, str] = {
    "jitter": "frames to each connection held a random 0-15 ms, per-connection order kept",
    "sync-shuffle": "SYNC members in a random order (RTP18)",
    "sync-pages": "SYNC pages of random sizes with opaque cursors (RTP18a, RTP18b)",
    "sync-no-cursor": "a one-page sync without channelSerial (RTP18c)",
    "sync-empty": "HAS_PRESENCE and an empty SYNC on attaching to an empty channel (RTP1)",
    "resync": "server-initiated complete SYNCs at random moments after presence activity (RTP18)",
    "id-shapes": "connection ids, sync ids, channel serials, synthesized leave ids of other shapes",
    "clock-skew": "the server's clock 90 s behind (TP3g; within the harness's tolerance)",
    "history-pages": "REST history pages shorter than limit, with next links (RSP4b3)",
    "ack-batch": "ACKs of consecutive PRESENCEs merged into one with count > 1 (RTN7b, TR4g)",
    "split-presence": "the events of one PRESENCE broadcast one per frame (TR4l, TP3a)",
}
"""Every variant by name, with one line on what it does (`docs/protocol.md` §15)."""
assert VARIANTS.keys() == SERVER_VARIANTS

JITTER_MAX = 0.015  # s a frame may be held (jitter)
ACK_HOLD = 0.003  # s an ACK waits for the next one (ack-batch)
RESYNC_DELAY = (0.0, 0.05)  # s after presence activity before a server-initiated sync
RESYNC_CHANCE = 0.3  # of presence activity on a channel leading to a re-sync
CLOCK_SKEW_MS = -90_000


def skewed_clock(config: ServerConfig, clock: Callable[[], int]) -> Callable[[], int]:
    """`clock`, or `clock` running `CLOCK_SKEW_MS` off with `clock-skew`."""
    if "clock-skew" not in config.variants:
        return clock
    return lambda: clock() + CLOCK_SKEW_MS


def id_factory(config: ServerConfig) -> IdFactory:
    """The ids of synthesized leaves: `synthetic-N` by default; with `id-shapes` another form
    (still never starting with a connectionId, RTP2b1)."""
    if "id-shapes" not in config.variants:
        return IdFactory()
    return _OtherIds(random.Random(config.variant_seed ^ 0x1D5))


class _OtherIds(IdFactory):
    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._rng = rng
        self._seq = itertools.count(1)

    def __call__(self, kind: str) -> str:
        return f"~{_token(self._rng, 9)}.{kind[:3]}{next(self._seq)}"


def history_page(config: ServerConfig) -> Callable[[int], int] | None:
    """With `history-pages`: the number of items a REST history page holds for a `limit`
    (random, at most `limit`); None otherwise."""
    if "history-pages" not in config.variants:
        return None
    rng = random.Random(config.variant_seed ^ 0x415)
    return lambda limit: rng.randint(max(1, limit // 3), limit)


def protocol_class(config: ServerConfig) -> type[RealtimeProtocol]:
    """`VariantProtocol` when any realtime variant is on, else the reference's own class."""
    return VariantProtocol if config.variants & REALTIME_VARIANTS else RealtimeProtocol


REALTIME_VARIANTS = frozenset(VARIANTS) - {"clock-skew", "history-pages"}

_ALPHABET = string.ascii_letters + string.digits + "_-"


def _token(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(length))


class JitterTransport(Transport):
    """`Transport` that holds the frames to each connection for a random time.

    A connection's frames are held in a FIFO released at once when its timer fires (a frame
    queued while others are held joins them), so one connection's frames never change order
    and frames sent together arrive together, while different connections hear the same
    broadcast at different times. Frames still held when a connection is lost are handed to
    `keep` (the resume backlog) if they are channel PRESENCE frames, as a broadcast to a lost
    connection is."""

    def __init__(
        self,
        config: ServerConfig,
        stats: collections.Counter[str],
        handler: FrameHandler,
        rng: random.Random,
        keep: Callable[[Connection, dict[str, Any]], None],
    ) -> None:
        super().__init__(config, stats, handler)
        self._rng = rng
        self._keep = keep
        self._held_frames: dict[Connection, collections.deque[bytes | None]] = {}

    def enqueue(self, conn: Connection, data: bytes | None) -> None:
        """Hold `data` for a random time (with the frames already held for `conn`, if any:
        frames sent together arrive together, as on one TCP stream)."""
        if conn.state in ("closed", "dropped"):
            return
        held = self._held_frames.get(conn)
        if held is not None:
            held.append(data)
            return
        self._held_frames[conn] = collections.deque((data,))
        asyncio.get_running_loop().call_later(
            self._rng.uniform(0.0, JITTER_MAX), self._release, conn
        )

    def _release(self, conn: Connection) -> None:
        for data in self._held_frames.pop(conn, ()):
            super().enqueue(conn, data)

    def lost(self, conn: Connection) -> None:
        """`conn` lost its transport: its held channel PRESENCE frames go to its backlog."""
        for data in self._held_frames.pop(conn, ()):
            if data is None:
                continue
            frame = decode_msgpack(data) if conn.format == "msgpack" else decode_json(data.decode())
            if isinstance(frame, dict) and frame.get("action") == ProtocolAction.PRESENCE:
                self._keep(conn, frame)


class VariantProtocol(RealtimeProtocol):
    """`RealtimeProtocol` with the realtime variants of `config.variants` on. Only the edges
    change (the transport, SYNC pages, ids, the grouping of ACKs and broadcast frames); the
    frame handling, the fast path included, is the reference's own."""

    def __init__(
        self,
        config: ServerConfig,
        model: PresenceModel,
        ids: IdFactory,
        auth: Authenticator,
        recorder: FrameRecorder,
        stats: collections.Counter[str],
    ) -> None:
        super().__init__(config, model, ids, auth, recorder, stats)
        self.variants = config.variants
        seed = config.variant_seed
        self._rng = random.Random(seed)
        if "jitter" in self.variants:
            self.transport = JitterTransport(
                config, stats, self, random.Random(seed ^ 0x717), self._keep
            )
        if "id-shapes" in self.variants:
            rng = random.Random(seed ^ 0x1D)
            self._instance = _token(rng, rng.randint(8, 20)).replace("-", "_")
            self._conn_seq = itertools.count(rng.randint(10**6, 10**9), rng.randint(1, 97))
            self._serials = _other_counter(rng)
        # ack-batch: per connection, the ACK being held [first msgSerial, count] and its timer
        self._held_acks: dict[Connection, list[int]] = {}
        self._ack_timers: dict[Connection, asyncio.TimerHandle] = {}
        self._resyncs: set[str] = set()  # channels with a re-sync scheduled

    def _channel_serial(self) -> str:
        if "id-shapes" in self.variants:
            return f"{next(self._serials)}@{self._instance}"
        return super()._channel_serial()

    # -- jitter: frames held for a lost connection ----------------------------------------------

    def lose(self, conn: Connection) -> None:
        """As the reference, then the frames jitter still held go to the resume backlog."""
        self._flush_ack(conn)
        super().lose(conn)
        if isinstance(self.transport, JitterTransport):
            self.transport.lost(conn)

    # -- ack-batch ------------------------------------------------------------------------------

    def _send(self, conn: Connection, frame: dict[str, Any]) -> None:
        if "ack-batch" not in self.variants:
            super()._send(conn, frame)
            return
        if frame.get("action") == ProtocolAction.ACK and frame.get("count") == 1:
            serial = frame["msgSerial"]
            held = self._held_acks.get(conn)
            if held is not None and held[0] + held[1] == serial:
                held[1] += 1
                return
            self._flush_ack(conn)
            self._held_acks[conn] = [serial, 1]
            self._ack_timers[conn] = asyncio.get_running_loop().call_later(
                ACK_HOLD, self._flush_ack, conn
            )
            return
        self._flush_ack(conn)  # nothing sent to a connection overtakes its held ACK
        super()._send(conn, frame)

    def _flush_ack(self, conn: Connection) -> None:
        timer = self._ack_timers.pop(conn, None)
        if timer is not None:
            timer.cancel()
        held = self._held_acks.pop(conn, None)
        if held is not None:
            super()._send(
                conn, {"action": ProtocolAction.ACK, "msgSerial": held[0], "count": held[1]}
            )

    # -- split-presence and resync ---------------------------------------------------------------

    def _publish_events(
        self,
        channel: str,
        events: list[PresenceMessage],
        conn: Connection | None = None,
        msg_serial: int | None = None,
    ) -> None:
        if "split-presence" in self.variants and len(events) > 1:
            for event in events:
                super()._publish_events(channel, [event], conn, msg_serial)
        else:
            super()._publish_events(channel, events, conn, msg_serial)
        if (
            events
            and "resync" in self.variants
            and channel not in self._resyncs
            and self._rng.random() < RESYNC_CHANCE
        ):
            self._resyncs.add(channel)
            asyncio.get_running_loop().call_later(
                self._rng.uniform(*RESYNC_DELAY), self._resync, channel
            )

    def _resync(self, channel: str) -> None:
        """RTP18: a complete SYNC of `channel` to each connection that hears its presence."""
        self._resyncs.discard(channel)
        members = self.model.get(channel)
        for conn in list(self._subscribers.get(channel, {}).values()):
            if conn.state == "open" and channel in conn.attached:
                self._sync(conn, channel, members)

    # -- SYNC -----------------------------------------------------------------------------------

    def _announces_presence(self, members: list[PresenceMessage]) -> bool:
        return bool(members) or "sync-empty" in self.variants

    def _sync(self, conn: Connection, channel: str, members: list[PresenceMessage]) -> None:
        variants = self.variants
        if not variants & {"sync-shuffle", "sync-pages", "sync-no-cursor", "id-shapes"}:
            super()._sync(conn, channel, members)
            return
        members = list(members)
        if "sync-shuffle" in variants:
            self._rng.shuffle(members)
        size = self.config.sync_page_size
        pages: list[list[PresenceMessage]] = []
        rest = members
        while rest:
            take = self._rng.randint(1, size) if "sync-pages" in variants else size
            pages.append(rest[:take])
            rest = rest[take:]
        pages = pages or [[]]
        if len(pages) == 1 and "sync-no-cursor" in variants and self._rng.random() < 0.5:
            self._send(
                conn,
                {
                    "action": ProtocolAction.SYNC,
                    "channel": channel,
                    "presence": [wire_presence(m) for m in pages[0]],
                },
            )
            return
        sync_id = (
            _token(self._rng, self._rng.randint(4, 24)) if "id-shapes" in variants else None
        ) or f"sync{self._instance}x{next(self._sync_seq)}"
        for number, page in enumerate(pages, 1):
            last = number == len(pages)
            if last:
                cursor = ""
            elif "sync-pages" in variants:
                cursor = _token(self._rng, self._rng.randint(1, 16))
            else:
                cursor = str(number)
            self._send(
                conn,
                {
                    "action": ProtocolAction.SYNC,
                    "channel": channel,
                    "channelSerial": f"{sync_id}:{cursor}",
                    "presence": [wire_presence(m) for m in page],
                },
            )


def _other_counter(rng: random.Random) -> Iterator[str]:
    """Increasing, but not small decimal numbers: a random base and step, in base 36."""
    value = rng.randint(10**6, 10**9)
    while True:
        value += rng.randint(1, 1000)
        yield _base36(value)


def _base36(value: int) -> str:
    digits = string.digits + string.ascii_lowercase
    out = ""
    while value:
        value, rem = divmod(value, 36)
        out = digits[rem] + out
    return out or "0"
