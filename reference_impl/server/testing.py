"""A raw Ably-protocol test client for the reference server: frames in, frames out, nothing more.

    async with await RawClient.open(server, client_id="alice") as alice:
        alice.connection_id                   # from CONNECTED
        await alice.send({"action": 10, "channel": "room"})
        attached = await alice.expect(11)     # next frame with that action (others are kept)
        frame = await alice.recv()            # next frame, whatever it is

Meant for tests of the server itself (not a presence client: no presence map, no retries).
Server HEARTBEATs without an id are dropped unless `keep_heartbeats` is set. With
`params={"format": "msgpack"}` (or a URL that says so) frames go both ways as MessagePack in
binary frames; a frame the server sends in the other frame type is a test failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import msgpack
from presence_conformance.reference_impl.protocol import HAS_PRESENCE, ProtocolAction
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

DEFAULT_TIMEOUT = 5.0


class RawClient:
    """One WebSocket to the server; a reader task queues every frame received."""

    def __init__(
        self, ws: ClientConnection, keep_heartbeats: bool = False, msgpack: bool = False
    ) -> None:
        self.ws = ws
        self.keep_heartbeats = keep_heartbeats
        self.msgpack = msgpack  # frames are MessagePack (binary) rather than JSON (text)
        self.wrong_type: list[str | bytes] = []  # frames in the other format's frame type
        self.frames: asyncio.Queue[dict | None] = asyncio.Queue()
        self.received: list[dict] = []
        self.connected: dict | None = None
        self.closed = asyncio.Event()
        self._held: list[dict] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect_url(
        cls,
        url: str,
        keep_heartbeats: bool = False,
        expect_connected: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> RawClient:
        ws = await asyncio.wait_for(connect(url, max_size=None, ping_interval=None), timeout)
        binary = parse_qs(urlsplit(url).query).get("format") == ["msgpack"]
        client = cls(ws, keep_heartbeats, binary)
        if expect_connected:
            client.connected = await client.expect(ProtocolAction.CONNECTED, timeout)
        return client

    @classmethod
    async def open(
        cls,
        server: Any,
        client_id: str | None = None,
        key: str | None = None,
        params: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> RawClient:
        """Connect to a running `PresenceServer` with `key` (default: its first key)."""
        query: dict[str, str] = {"key": key or server.default_key, "format": "json"}
        if client_id is not None:
            query["clientId"] = client_id
        query.update(params or {})
        return await cls.connect_url(f"{server.url}?{urlencode(query)}", **kwargs)

    @property
    def connection_id(self) -> str:
        assert self.connected is not None, "no CONNECTED received"
        return self.connected["connectionId"]

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes) != self.msgpack:
                    self.wrong_type.append(message)
                    continue
                frame = msgpack.unpackb(message) if self.msgpack else json.loads(message)
                if (
                    not self.keep_heartbeats
                    and isinstance(frame, dict)
                    and frame.get("action") == ProtocolAction.HEARTBEAT
                    and "id" not in frame
                ):
                    continue
                self.received.append(frame)
                self.frames.put_nowait(frame)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self.frames.put_nowait(None)

    async def send(self, frame: Any) -> None:
        """Send a frame: a dict or list is encoded (JSON, or MessagePack on a msgpack client),
        a str or bytes goes as it is."""
        if isinstance(frame, (str, bytes)):
            data: str | bytes = frame
        elif self.msgpack:
            data = msgpack.packb(frame, use_bin_type=True)
        else:
            data = json.dumps(frame)
        await self.ws.send(data)

    async def recv(self, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """The next frame (held-back frames first); TimeoutError, or EOFError once closed."""
        if self._held:
            return self._held.pop(0)
        frame = await asyncio.wait_for(self.frames.get(), timeout)
        if frame is None:
            self.frames.put_nowait(None)
            raise EOFError("connection closed")
        return frame

    async def expect(self, action: int, timeout: float = DEFAULT_TIMEOUT, **fields: Any) -> dict:
        """The next frame with `action` (and the given top-level fields); others are held back
        for later `recv`/`expect` calls."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for index, held in enumerate(self._held):
            if _matches(held, action, fields):
                return self._held.pop(index)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"no frame with action {action} {fields} within {timeout}s; "
                    f"held: {self._held[-5:]}"
                )
            frame = await asyncio.wait_for(self.frames.get(), remaining)
            if frame is None:
                self.frames.put_nowait(None)
                raise EOFError(f"connection closed while waiting for action {action}")
            if _matches(frame, action, fields):
                return frame
            self._held.append(frame)

    async def no_frame(self, seconds: float, action: int | None = None) -> list[dict]:
        """Wait `seconds`; return the frames (of `action`, if given) that arrived meanwhile."""
        await asyncio.sleep(seconds)
        got: list[dict] = []
        while True:
            try:
                frame = self.frames.get_nowait()
            except asyncio.QueueEmpty:
                break
            if frame is not None:
                got.append(frame)
        self._held.extend(got)
        return [f for f in got if action is None or f.get("action") == action]

    async def sync_point(self, token: str = "sync-point", timeout: float = DEFAULT_TIMEOUT) -> None:
        """Send a HEARTBEAT with an id and wait for its echo: every earlier frame is handled."""
        await self.send({"action": ProtocolAction.HEARTBEAT, "id": token})
        await self.expect(ProtocolAction.HEARTBEAT, timeout, id=token)

    async def attach(
        self, channel: str, timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[dict, list[dict]]:
        """ATTACH; return ATTACHED and the SYNC frames that followed (until the empty cursor)."""
        await self.send({"action": ProtocolAction.ATTACH, "channel": channel})
        attached = await self.expect(ProtocolAction.ATTACHED, timeout, channel=channel)
        syncs: list[dict] = []
        if attached.get("flags", 0) & HAS_PRESENCE:
            while True:
                sync = await self.expect(ProtocolAction.SYNC, timeout, channel=channel)
                syncs.append(sync)
                serial = sync.get("channelSerial")
                if serial is None or serial.split(":", 1)[1] == "":
                    break
        return attached, syncs

    async def presence(
        self, channel: str, msg_serial: int, *items: dict, timeout: float = DEFAULT_TIMEOUT
    ) -> dict:
        """Send PRESENCE; return the ACK or NACK for `msg_serial`."""
        await self.send(
            {
                "action": ProtocolAction.PRESENCE,
                "channel": channel,
                "msgSerial": msg_serial,
                "presence": list(items),
            }
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.expect_any(
                (ProtocolAction.ACK, ProtocolAction.NACK), max(0.0, deadline - loop.time())
            )
            if frame.get("msgSerial") == msg_serial:
                return frame
            self._held.append(frame)

    async def expect_any(self, actions: tuple[int, ...], timeout: float = DEFAULT_TIMEOUT) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for index, held in enumerate(self._held):
            if held.get("action") in actions:
                return self._held.pop(index)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no frame with action in {actions} within {timeout}s")
            frame = await asyncio.wait_for(self.frames.get(), remaining)
            if frame is None:
                self.frames.put_nowait(None)
                raise EOFError(f"connection closed while waiting for {actions}")
            if frame.get("action") in actions:
                return frame
            self._held.append(frame)

    def abort(self) -> None:
        """Cut the TCP connection without a CLOSE frame or a WebSocket close (network loss)."""
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    async def close(self) -> None:
        """Close the WebSocket (no Ably CLOSE frame is sent: use `send({"action": 7})`)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2.0)
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _matches(frame: dict, action: int, fields: Mapping[str, Any]) -> bool:
    return (
        isinstance(frame, dict)
        and frame.get("action") == action
        and all(frame.get(k) == v for k, v in fields.items())
    )
