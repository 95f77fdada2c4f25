"""`bridge`: drive an SDK in any language through a JSON-lines protocol over a subprocess.

The harness starts the child (`--adapter-option command="node my_bridge.mjs"`), writes one JSON
request per line to its stdin, and reads one JSON response or event per line from its stdout;
stderr is the child's log (its last lines are quoted when it fails). The protocol is in
`docs/bridge.md`, every message's schema in `spec/schemas/bridge.json`:

    -> {"id": 3, "op": "enter", "connection": "c1", "channel": "room", "data": "hi"}
    <- {"id": 3, "ok": true, "result": null}
    <- {"event": "presence", "subscription": "s1", "message": {"action": "enter", ...}}
    <- {"id": 4, "ok": false, "error": {"code": 40160, "message": "..."}}

`hello` negotiates the features: the adapter declares what the child declares, less what the
server side cannot give (capabilities and wire frames need the embedded reference server, which
`start()` runs on a free port unless `endpoint`/`key` options point at another server).

Faults never hang or stop the run. Every request is bounded (`timeout`); a child that does not
answer in time, exits, or writes a line that is not bridge protocol (not JSON, not valid against
the schema, a result of the wrong shape, an unknown id) is killed with its whole process group.
The waiting call fails with an error naming the operation, the child's exit code and its last
stderr lines or the offending line (the runner adds the scenario step); calls on the dead
child's connections fail the same way, and the next `connect()` starts a new child, so the next
case runs normally.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import shlex
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from presence_conformance.harness.adapter import (
    ALL_FEATURES,
    Adapter,
    AdapterChannel,
    AdapterConnection,
    AdapterPresence,
    Feature,
    HistoryPage,
    Listener,
    PresenceError,
    UsageError,
)
from presence_conformance.harness.adapters.embedded import (
    DEFAULT_LEAVE_GRACE,
    FULL_CAPABILITY,
    EmbeddedServer,
    ServerTarget,
    parse_float,
    parse_server_variants,
)
from presence_conformance.reference_impl.types import (
    Action,
    PresenceMessage,
    data_from_json,
    data_to_json,
)

__all__ = [
    "PROTOCOL_VERSION",
    "BridgeAdapter",
    "BridgeError",
    "BridgeProtocolError",
    "message_from_json",
]

PROTOCOL_VERSION = 1
DEFAULT_TIMEOUT = 20.0
QUIESCE_TIMEOUT = 5.0
SHUTDOWN_GRACE = 2.0
STDERR_LINES = 20
LINE_LIMIT = 64 << 20  # one stdout line: a history page of 1000 large members fits
NEGOTIABLE = ALL_FEATURES | {
    Feature.CHANNEL_EVENTS
}  # what a child may declare (wire frames: server side)


class BridgeError(RuntimeError):
    """The bridge child failed (exited, hung, or broke the protocol): the adapter broke."""


class BridgeProtocolError(BridgeError):
    """The child wrote something that is not bridge protocol."""


# -- schema ---------------------------------------------------------------------------------------


class _Schemas:
    """Validators for parts of `spec/schemas/bridge.json` (built once, on first use)."""

    _cache: ClassVar[dict[str, Any]] = {}

    @classmethod
    def validator(cls, pointer: str) -> Any:
        validator = cls._cache.get(pointer)
        if validator is None:
            from jsonschema import Draft202012Validator

            from presence_conformance import spec

            root = spec.schema("bridge")
            sub = {"$schema": root["$schema"], "$defs": root["$defs"], "$ref": f"#/$defs/{pointer}"}
            validator = cls._cache[pointer] = Draft202012Validator(sub)
        return validator

    @classmethod
    def problem(cls, pointer: str, instance: Any) -> str | None:
        """None if `instance` is valid against `$defs/<pointer>`, else one readable message."""
        from jsonschema.exceptions import best_match

        error = best_match(cls.validator(pointer).iter_errors(instance))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"{where}: {error.message}"


def validate_message(obj: Any, outgoing: bool) -> str | None:
    """Check one protocol line: a request (`outgoing`), or a response or event."""
    if outgoing:
        return _Schemas.problem("request", obj)
    if isinstance(obj, dict) and "event" in obj:
        return _Schemas.problem("event", obj)
    return _Schemas.problem("response", obj)


def validate_result(op: str, result: Any) -> str | None:
    """Check the result of a successful `op` against `$defs/results/<op>`."""
    return _Schemas.problem(f"results/{op}", result)


def _short(text: str, width: int = 300) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def message_from_json(obj: Mapping[str, Any]) -> PresenceMessage:
    """A presence message in the bridge's JSON form as a `PresenceMessage`, field for field:
    nothing is repaired (a missing field is None, an unknown action name stays a string)."""

    def given(key: str) -> Any:  # the value as sent, unchecked: the message checks judge it
        return obj.get(key)

    action = given("action")
    if isinstance(action, str) and action in Action._value2member_map_:
        action = Action(action)
    return PresenceMessage(
        action=action,
        client_id=given("clientId"),
        connection_id=given("connectionId"),
        data=data_from_json(given("data")),
        timestamp=given("timestamp"),
        id=given("id"),
    )


# -- the child process ----------------------------------------------------------------------------


class _Pending:
    def __init__(self, op: str, future: asyncio.Future) -> None:
        self.op = op
        self.future = future


class BridgeChild:
    """One bridge subprocess: requests, responses, events, and its death."""

    def __init__(self, adapter: BridgeAdapter, generation: int) -> None:
        self.adapter = adapter
        self.generation = generation
        self.proc: asyncio.subprocess.Process | None = None
        self.ids = itertools.count(1)
        self.pending: dict[int, _Pending] = {}
        self.abandoned: set[int] = set()
        self.stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.dead: str | None = None  # why it is gone
        self.hello: dict[str, Any] = {}
        self._tasks: list[asyncio.Task] = []
        self._write_lock = asyncio.Lock()
        self._killing: str | None = None
        self._killer: asyncio.Future | None = None

    @property
    def alive(self) -> bool:
        return self.dead is None and self._killing is None and self.proc is not None

    async def spawn(self) -> None:
        adapter = self.adapter
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *adapter.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=adapter.cwd,
                start_new_session=True,
                limit=LINE_LIMIT,
                env=adapter.child_env(),
            )
        except OSError as exc:
            raise BridgeError(
                f"bridge: cannot start {shlex.join(adapter.command)!r}"
                f"{f' in {adapter.cwd}' if adapter.cwd else ''}: {exc}"
            ) from exc
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    # requests

    async def request(
        self, op: str, args: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Send `op`, wait (bounded) for its response; return the result or raise."""
        if not self.alive:
            raise BridgeError(
                f"bridge child is gone ({self.dead or self._killing}); cannot run {op}"
                f"{self._stderr_tail()}"
            )
        assert self.proc is not None and self.proc.stdin is not None
        rid = next(self.ids)
        message = {"id": rid, "op": op, **(args or {})}
        problem = validate_message(message, outgoing=True)
        if problem is not None:  # a bug in this adapter, not in the child
            raise BridgeError(f"bridge: the harness built an invalid {op} request: {problem}")
        line = json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n"
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending[rid] = _Pending(op, future)
        limit = self.adapter.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                try:
                    async with self._write_lock:
                        self.proc.stdin.write(line.encode())
                        await self.proc.stdin.drain()
                except (ConnectionError, RuntimeError, OSError) as exc:
                    await self._died(f"its stdin is closed ({type(exc).__name__})")
                    # _died failed the future with the reason
                return await future
        except TimeoutError:
            self.pending.pop(rid, None)
            if op == "quiesce":
                self.abandoned.add(rid)
                raise
            await self.kill(f"it did not answer {op} (request {rid}) within {limit:g}s")
            raise TimeoutError(
                f"bridge child did not answer {op} (request {rid}) within "
                f"{limit:g}s; it was killed{self._stderr_tail()}"
            ) from None
        except asyncio.CancelledError:
            if self.pending.pop(rid, None) is not None:
                if op == "quiesce":
                    self.abandoned.add(rid)
                else:  # the caller gave up waiting: the child is not trusted any more
                    await asyncio.shield(
                        self.kill(
                            f"{op} (request {rid}) was abandoned "
                            "unanswered (the operation timed out)"
                        )
                    )
            raise
        finally:
            self.pending.pop(rid, None)

    # reading

    async def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        while True:
            try:
                raw = await stdout.readline()
            except ValueError:  # longer than LINE_LIMIT
                await self._violation(f"a line longer than {LINE_LIMIT} bytes on stdout")
                return
            except (ConnectionError, OSError):
                raw = b""
            if not raw:
                await self._exited()
                return
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not text.strip():
                continue
            try:
                handled = self._handle(text)
            except Exception as exc:  # e.g. RecursionError: a line nested 100k deep
                await self._violation(
                    f"its stdout line could not be read ({type(exc).__name__}: "
                    f"{_short(str(exc), 200)}): {_short(text)!r}"
                )
                return
            if not handled:
                return

    def _handle(self, text: str) -> bool:
        """Dispatch one stdout line; False once the child has been condemned."""
        try:
            obj = json.loads(text)
        except ValueError as exc:
            self._condemn(f"it wrote a line that is not JSON on stdout: {_short(text)!r} ({exc})")
            return False
        problem = validate_message(obj, outgoing=False)
        if problem is not None:
            self._condemn(
                f"it wrote a line that is not bridge protocol on stdout: "
                f"{_short(text)!r} ({problem})"
            )
            return False
        if "event" in obj:
            self.adapter.dispatch(self, obj["subscription"], obj["message"])
            return True
        rid = obj["id"]
        pending = self.pending.pop(rid, None)
        if pending is None:
            if rid in self.abandoned:
                self.abandoned.discard(rid)
                return True
            self._condemn(f"it answered a request it was not asked (id {rid}): {_short(text)!r}")
            return False
        if pending.future.done():
            return True
        if obj["ok"]:
            result = obj.get("result")
            problem = validate_result(pending.op, result)
            if problem is not None:
                reason = (
                    f"its result for {pending.op} (request {rid}) is not of the bridge's "
                    f"form: {_short(text)!r} ({problem})"
                )
                pending.future.set_exception(
                    BridgeProtocolError(
                        f"bridge child failed while the harness waited for {pending.op} (request "
                        f"{rid}): {reason}"
                    )
                )
                self._condemn(reason)
                return False
            pending.future.set_result(result)
        else:
            pending.future.set_exception(self.adapter.error_from(pending.op, obj["error"]))
        return True

    def _condemn(self, reason: str) -> None:
        """A protocol violation: the child is unusable from now on; kill it (in a task)."""
        if self.dead is None and self._killing is None:
            self._killing = reason
            self._killer = asyncio.ensure_future(self._kill(reason, protocol=True))

    async def _violation(self, reason: str) -> None:
        await self.kill(reason, protocol=True)

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        stderr = self.proc.stderr
        while True:
            try:
                raw = await stderr.readline()
            except ValueError:
                continue
            except (ConnectionError, OSError):
                return
            if not raw:
                return
            self.stderr.append(_short(raw.decode("utf-8", errors="replace").rstrip(), 500))

    def _stderr_tail(self) -> str:
        lines = [line for line in self.stderr if line.strip()]
        if not lines:
            return "; it wrote nothing on stderr"
        return "; last stderr lines:\n    " + "\n    ".join(lines[-10:])

    # death

    async def _exited(self) -> None:
        """stdout closed: the child exited (or closed it). Fail everything waiting."""
        if self.dead is not None or self._killing is not None:
            return
        code = await self._returncode()
        await self._settle_stderr()
        await self._died(
            f"it exited with code {code}" if code is not None else "it closed its stdout"
        )

    async def _returncode(self) -> int | None:
        if self.proc is None:
            return None
        try:
            return await asyncio.wait_for(self.proc.wait(), 2.0)
        except TimeoutError:
            return None

    async def _settle_stderr(self) -> None:
        if len(self._tasks) > 1:  # let the stderr reader catch the last lines
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._tasks[1]), 0.5)

    async def _died(self, reason: str, protocol: bool = False) -> None:
        if self.dead is not None:
            return
        self.dead = reason
        waiting = list(self.pending.items())
        self.pending.clear()
        tail = self._stderr_tail()
        for rid, pending in waiting:
            if not pending.future.done():
                cls = BridgeProtocolError if protocol else BridgeError
                pending.future.set_exception(
                    cls(
                        f"bridge child failed while the harness waited for {pending.op} "
                        f"(request {rid}): {reason}{tail}"
                    )
                )
        self._kill_group()
        self.adapter.child_died(self)

    async def kill(self, reason: str, protocol: bool = False) -> None:
        """Kill the child's process group and fail everything waiting with `reason`."""
        if self.dead is None and self._killing is None:
            self._killing = reason
            await self._kill(reason, protocol)
        elif self.dead is None and self._killer is not None:  # being killed: wait for it
            await asyncio.shield(self._killer)
        await self._cancel_tasks()

    async def _kill(self, reason: str, protocol: bool) -> None:
        self._kill_group()
        await self._returncode()
        await self._settle_stderr()
        await self._died(reason, protocol)
        await self._cancel_tasks()

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current and not task.done():
                task.cancel()

    async def shutdown(self) -> None:
        """Ask the child to exit (bounded), then kill what is left of its process group."""
        if self.alive:
            with contextlib.suppress(Exception):
                await self.request("shutdown", timeout=SHUTDOWN_GRACE)
            if self.proc is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), SHUTDOWN_GRACE)
        self.dead = self.dead or "shut down"
        self._kill_group()
        if self.proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), SHUTDOWN_GRACE)
        await self._cancel_tasks()


# -- contract objects -----------------------------------------------------------------------------


class BridgeHistoryPage(HistoryPage):
    """A history page held by the child (`page` handle for `history_next`)."""

    def __init__(self, connection: BridgeConnection, result: Mapping[str, Any]) -> None:
        self._connection = connection
        self.items = [message_from_json(m) for m in result["items"]]
        self._has_next = bool(result["hasNext"])
        self._page = result["page"]

    def has_next(self) -> bool:
        return self._has_next

    async def next(self) -> HistoryPage | None:
        if self._page is None:
            return None
        result = await self._connection.request("history_next", {"page": self._page})
        return None if result is None else BridgeHistoryPage(self._connection, result)


class BridgePresence(AdapterPresence):
    """A channel's presence on one bridged connection."""

    def __init__(self, channel: BridgeChannel) -> None:
        self._channel = channel
        self._conn = channel.connection
        self._subscriptions: dict[Any, str] = {}  # listener -> subscription handle

    def _where(self) -> dict[str, Any]:
        return {"connection": self._conn.handle, "channel": self._channel.name}

    async def _publish(self, op: str, data: Any) -> None:
        args = self._where()
        if data is not None:
            args["data"] = data_to_json(data)
        await self._conn.request(op, args)

    async def enter(self, data: Any = None) -> None:
        await self._publish("enter", data)

    async def update(self, data: Any = None) -> None:
        await self._publish("update", data)

    async def leave(self, data: Any = None) -> None:
        await self._publish("leave", data)

    async def get(
        self,
        client_id: str | None = None,
        connection_id: str | None = None,
        wait_for_sync: bool = True,
    ) -> list[PresenceMessage]:
        args = self._where()
        if client_id is not None:
            args["clientId"] = client_id
        if connection_id is not None:
            args["connectionId"] = connection_id
        if wait_for_sync is not True:
            args["waitForSync"] = bool(wait_for_sync)
        result = await self._conn.request("get", args)
        return [message_from_json(m) for m in result]

    def _handle(self, listener: Listener) -> str:
        handle = self._subscriptions.get(listener)
        if handle is None:
            handle = self._subscriptions[listener] = self._conn.adapter.new_subscription(
                listener, self._conn
            )
        return handle

    async def subscribe(self, listener: Listener, actions: list[str] | None = None) -> None:
        args = {
            **self._where(),
            "subscription": self._handle(listener),
            "actions": None if actions is None else list(actions),
        }
        await self._conn.request("subscribe", args)

    async def unsubscribe(
        self, listener: Listener | None = None, actions: list[str] | None = None
    ) -> None:
        handle = None if listener is None else self._handle(listener)
        args = {
            **self._where(),
            "subscription": handle,
            "actions": None if actions is None else list(actions),
        }
        await self._conn.request("unsubscribe", args)

    async def history(
        self,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        direction: str | None = None,
    ) -> HistoryPage:
        args = self._where()
        for key, value in (
            ("start", start),
            ("end", end),
            ("limit", limit),
            ("direction", direction),
        ):
            if value is not None:
                args[key] = value
        result = await self._conn.request("history", args)
        return BridgeHistoryPage(self._conn, result)

    async def sync_complete(self) -> bool:
        return await self._conn.request("sync_complete", self._where())

    async def _client_publish(self, op: str, client_id: str, data: Any) -> None:
        args = {**self._where(), "clientId": client_id}
        if data is not None:
            args["data"] = data_to_json(data)
        await self._conn.request(op, args)

    async def enter_client(self, client_id: str, data: Any = None) -> None:
        await self._client_publish("enter_client", client_id, data)

    async def update_client(self, client_id: str, data: Any = None) -> None:
        await self._client_publish("update_client", client_id, data)

    async def leave_client(self, client_id: str, data: Any = None) -> None:
        await self._client_publish("leave_client", client_id, data)

    async def rest_get(
        self,
        limit: int | None = None,
        client_id: str | None = None,
        connection_id: str | None = None,
    ) -> list[PresenceMessage]:
        args = self._where()
        for key, value in (
            ("limit", limit),
            ("clientId", client_id),
            ("connectionId", connection_id),
        ):
            if value is not None:
                args[key] = value
        result = await self._conn.request("rest_get", args)
        return [message_from_json(m) for m in result]


class BridgeChannel(AdapterChannel):
    """A channel on one bridged connection."""

    def __init__(self, connection: BridgeConnection, name: str) -> None:
        self.connection = connection
        self.name = name
        self._presence = BridgePresence(self)

    @property
    def presence(self) -> BridgePresence:
        return self._presence

    def _where(self) -> dict[str, Any]:
        return {"connection": self.connection.handle, "channel": self.name}

    async def attach(self) -> None:
        await self.connection.request("attach", self._where())

    async def detach(self) -> None:
        await self.connection.request("detach", self._where())

    async def state(self) -> str:
        return str(await self.connection.request("channel_state", self._where()))

    async def state_changes(self) -> list[dict[str, Any]]:
        events = await self.connection.request("channel_events", self._where())
        return [
            {
                "event": e.get("event"),
                "current": e.get("current"),
                "previous": e.get("previous"),
                "resumed": bool(e.get("resumed")),
                "reason_code": e.get("reasonCode"),
            }
            for e in events or ()
        ]


class BridgeConnection(AdapterConnection):
    """A connection held by the child under the handle `c<n>`."""

    def __init__(
        self,
        adapter: BridgeAdapter,
        child: BridgeChild,
        handle: str,
        connection_id: str,
        client_id: str | None,
    ) -> None:
        self.adapter = adapter
        self.child = child
        self.handle = handle
        self.id = connection_id
        self.client_id = client_id
        self.closed = False
        self._channels: dict[str, BridgeChannel] = {}

    def channel(self, name: str) -> BridgeChannel:
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = BridgeChannel(self, name)
        return channel

    async def request(self, op: str, args: Mapping[str, Any]) -> Any:
        return await self.child.request(op, args)

    async def close(self) -> None:
        self.closed = True
        await self.child.request("close", {"connection": self.handle})

    async def drop(self) -> None:
        self.closed = True
        await self.child.request("drop", {"connection": self.handle})

    async def interrupt(self, seconds: float, resume: bool = True) -> None:
        """The child cuts the client's transport and lets it back after `seconds`; without
        `resume` the embedded server refuses the resume first (RTN15c7)."""
        if not resume:
            embedded = self.adapter.embedded
            if embedded is None or embedded.server is None:
                raise NotImplementedError(
                    f"{self.adapter.name}: a refused resume needs the embedded server"
                )
            embedded.server.refuse_resume(self.id)
        await self.child.request("interrupt", {"connection": self.handle, "seconds": seconds})

    async def reconnected(self) -> None:
        result = await self.child.request("reconnected", {"connection": self.handle})
        connection_id = result.get("connectionId") if isinstance(result, dict) else None
        if isinstance(connection_id, str) and connection_id:
            self.id = connection_id


# -- the adapter ----------------------------------------------------------------------------------


class BridgeAdapter(Adapter):
    """Any SDK, in any language, behind the JSON-lines bridge protocol (docs/bridge.md)."""

    name: ClassVar[str] = "bridge"
    features: frozenset[Feature] = frozenset()  # type: ignore[misc]  # set by hello
    options: ClassVar[Mapping[str, str]] = {
        "command": 'the child\'s command line (shell words, e.g. "node bridge.mjs"); required',
        "cwd": "working directory of the child (default: the current one)",
        "endpoint": "HOST:PORT of another Ably-protocol server, passed to the child (default: "
        "start the embedded reference server on a free port)",
        "key": "API key NAME:SECRET for that server (needed with endpoint)",
        "leave_grace": "seconds before a dropped connection's members leave: the embedded "
        f"server is started with it; for another server, give its value "
        f"(default {DEFAULT_LEAVE_GRACE:g})",
        "timeout": f"seconds the child may take to answer one request (default "
        f"{DEFAULT_TIMEOUT:g}); it is killed after that",
        "server_variants": "conforming variants of the embedded server, comma-separated, or "
        "all (reference_impl/server/variants.py; default none)",
        "variant_seed": "seed of the embedded server's variant randomness (default 0)",
    }
    quiet_period = 0.2

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        opts = self.option_values
        self.leave_grace = parse_float(self.name, opts, "leave_grace", DEFAULT_LEAVE_GRACE)
        self.timeout = parse_float(self.name, opts, "timeout", DEFAULT_TIMEOUT, minimum=0.001)
        self.target = ServerTarget.from_options(self.name, opts)
        self.server_variants, self.variant_seed = parse_server_variants(self.name, opts)
        if self.target.external and self.server_variants:
            raise UsageError(
                f"adapter {self.name!r}: server_variants only applies to the embedded server"
            )
        self.command = self.child_command(opts)
        cwd = opts.get("cwd")
        if cwd is not None and not Path(cwd).is_dir():
            raise UsageError(f"adapter {self.name!r}: cwd={cwd!r} is not a directory")
        self.cwd: str | None = cwd if cwd is not None else self.default_cwd()
        self.embedded: EmbeddedServer | None = None
        self.sdk = ""
        self.child_ops: frozenset[str] = frozenset()
        self._child: BridgeChild | None = None
        self._generations = itertools.count(1)
        self._handles = itertools.count(1)
        self._subscription_ids = itertools.count(1)
        self._listeners: dict[str, tuple[Listener, BridgeConnection]] = {}
        self._connections: list[BridgeConnection] = []
        self._spawn_lock: asyncio.Lock | None = None

    # for subclasses (ably-js)

    def child_command(self, options: Mapping[str, str]) -> list[str]:
        """The child's argv, from the `command` option."""
        raw = options.get("command")
        if not raw or not raw.strip():
            raise UsageError(
                f"adapter {self.name!r}: option command is required, e.g. "
                "--adapter-option command='node my_bridge.mjs' (see docs/bridge.md)"
            )
        try:
            argv = shlex.split(raw)
        except ValueError as exc:
            raise UsageError(f"adapter {self.name!r}: command={raw!r}: {exc}") from None
        return argv

    def default_cwd(self) -> str | None:
        return None

    def child_env(self) -> dict[str, str]:
        """The child's environment (the harness's own)."""
        return dict(os.environ)

    # lifecycle

    async def start(self) -> None:
        """Start the embedded reference server (unless an endpoint was given) and the child."""
        self._spawn_lock = asyncio.Lock()
        if not self.target.external:
            variants: dict[str, Any] = {}
            if self.server_variants:
                variants = {"variants": self.server_variants, "variant_seed": self.variant_seed}
            self.embedded = EmbeddedServer(leave_grace=self.leave_grace, **variants)
            self.target.endpoint = await self.embedded.start()
            self.target.key = self.embedded.key
        try:
            await self._ensure_child()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Shut the child down (bounded; its process group is killed), stop the server."""
        child, self._child = self._child, None
        if child is not None:
            await child.shutdown()
        self._connections.clear()
        self._listeners.clear()
        if self.embedded is not None:
            embedded, self.embedded = self.embedded, None
            await embedded.stop()

    async def _ensure_child(self) -> BridgeChild:
        assert self._spawn_lock is not None, "start() first"
        async with self._spawn_lock:
            if self._child is not None and self._child.alive:
                return self._child
            child = BridgeChild(self, next(self._generations))
            await child.spawn()
            try:
                hello = await child.request(
                    "hello",
                    {
                        "protocol": PROTOCOL_VERSION,
                        "harness": _harness_version(),
                        "server": {
                            "endpoint": self.target.endpoint,
                            "key": self.target.key,
                            "embedded": self.embedded is not None,
                        },
                    },
                )
            except BaseException as exc:
                await child.kill(f"hello failed: {exc}")
                raise BridgeError(
                    f"bridge child {shlex.join(self.command)!r} failed to start: {exc}"
                ) from exc
            self._apply_hello(child, hello)
            self._child = child
            return child

    def _apply_hello(self, child: BridgeChild, hello: Mapping[str, Any]) -> None:
        child.hello = dict(hello)
        declared = {Feature(f) for f in hello["features"]} & NEGOTIABLE
        if self.embedded is not None:
            declared.add(Feature.WIRE_FRAMES)
            declared.add(Feature.SERVER_CONTROL)  # `server:` steps need no child support
        else:
            declared.discard(Feature.CAPABILITIES)
        self.sdk = str(hello["sdk"])
        self.child_ops = frozenset(hello.get("ops") or ())
        self.features = frozenset(declared)

    @property
    def server_control(self) -> Any:
        """The embedded server's control (Feature.SERVER_CONTROL); None without it."""
        return None if self.embedded is None else self.embedded.control

    def child_died(self, child: BridgeChild) -> None:
        if self._child is child:
            self._child = None

    # connections

    def _key_for(self, capability: dict[str, list[str]] | None) -> str:
        if self.embedded is not None:
            return self.embedded.key_for(capability)
        if capability is not None and capability != FULL_CAPABILITY:
            raise NotImplementedError(
                f"{self.name}: capabilities need the embedded server (it "
                "mints a key per capability)"
            )
        return self.target.key

    async def connect(
        self, client_id: str | None, capability: dict[str, list[str]] | None = None
    ) -> BridgeConnection:
        child = await self._ensure_child()
        key = self._key_for(capability)
        handle = f"c{next(self._handles)}"
        args: dict[str, Any] = {
            "connection": handle,
            "clientId": client_id,
            "endpoint": self.target.endpoint,
            "key": key,
            "capability": capability,
        }
        if self.embedded is not None:
            args["token"] = self.embedded.token_for(key, client_id)
        result = await child.request("connect", args)
        conn = BridgeConnection(
            self, child, handle, result["connectionId"], result.get("clientId", client_id)
        )
        self._connections = [c for c in self._connections if not c.closed and c.child.alive]
        self._connections.append(conn)
        return conn

    def new_subscription(self, listener: Listener, conn: BridgeConnection) -> str:
        handle = f"s{next(self._subscription_ids)}"
        self._listeners[handle] = (listener, conn)
        return handle

    def dispatch(self, child: BridgeChild, subscription: str, message: Mapping[str, Any]) -> None:
        """An event line: call the subscription's listener (from the reader task)."""
        entry = self._listeners.get(subscription)
        if entry is None or entry[1].child is not child:
            return  # a listener of a connection that is gone, or never subscribed: ignore
        with contextlib.suppress(Exception):  # a listener's bug must not stop the reader
            entry[0](message_from_json(message))

    def error_from(self, op: str, error: Mapping[str, Any]) -> BaseException:
        """A child's `error` object as the exception the contract expects."""
        message = str(error.get("message", ""))
        kind = error.get("type")
        sdk = f" ({self.sdk})" if self.sdk else ""
        if kind == "unsupported":
            return NotImplementedError(f"{op}: not offered by the SDK{sdk}: {message}")
        if kind == "internal":
            return BridgeError(f"the bridge child failed in {op}{sdk}: {message}")
        status = error.get("statusCode")
        return PresenceError(
            error.get("code"),  # type: ignore[arg-type]  # as given; judged by error.has-code
            message,
            status_code=status if isinstance(status, int) else None,
        )

    async def quiesce(self) -> bool:
        """With the embedded server and a child that implements `quiesce`: ask it (bounded)."""
        child = self._child
        if (
            self.embedded is None
            or child is None
            or not child.alive
            or "quiesce" not in self.child_ops
        ):
            return False
        try:
            return bool(await child.request("quiesce", timeout=QUIESCE_TIMEOUT))
        except (TimeoutError, BridgeError, PresenceError, NotImplementedError):
            return False

    def wire_frames(self, connection_id: str) -> list[dict]:
        """Client->server frames the embedded server recorded for `connection_id`."""
        if self.embedded is None:
            raise NotImplementedError(f"{self.name}: wire frames need the embedded server")
        return self.embedded.frames(connection_id)


def _harness_version() -> str:
    from presence_conformance.harness.version import harness_version

    return f"presence-conformance {harness_version()}"


def command_words(command: Sequence[str]) -> str:
    """`command` as one shell-quoted string (for messages)."""
    return shlex.join(command)
