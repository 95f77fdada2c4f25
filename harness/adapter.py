"""The adapter contract: the only code a user writes to put an implementation under test.

An adapter mirrors the seed's Presence API (`spec/presence-api.md`) in async Python:

    adapter = MyAdapter(options)            # options: dict[str, str] from --adapter-option K=V
    await adapter.start()                   # e.g. start a server, spawn a subprocess
    conn = await adapter.connect(client_id="alice", capability=None)
    conn.id                                 # the connectionId the implementation assigned
    presence = conn.channel("room").presence
    await presence.enter(data)              # update(data), leave(data)
    await presence.get(client_id=None, connection_id=None, wait_for_sync=True)
    await presence.subscribe(listener, actions=None)    # actions: None or a list of names
    await presence.unsubscribe(listener=None, actions=None)
    page = await presence.history(start=None, end=None, limit=None, direction=None)
    await presence.sync_complete()          # the seed's `syncComplete` property
    await conn.close(); await conn.drop()   # graceful close; abrupt disconnect (fault injection)
    await conn.interrupt(seconds, resume=True)  # transient disconnect: cut now, back after `seconds`
    await conn.reconnected()                # wait until connected again; `conn.id` is then current
    await presence.enter_client(client_id, data)  # update_client, leave_client (RTP14, RTP15)
    await presence.rest_get(limit=None, client_id=None, connection_id=None)  # REST (RSP3)
    channel = conn.channel("room")          # with Feature.CHANNEL_LIFECYCLE (RTL4, RTL5):
    await channel.attach(); await channel.detach(); await channel.state()  # "attached", ...
    await adapter.quiesce()                 # optional: True once all events are delivered
    await adapter.stop()

Listeners are plain callables taking one `PresenceMessage`; the adapter calls them from its own
tasks, never from inside the call that caused the event. Operations that the implementation
refuses raise `PresenceError` with the Ably error code; any other exception is reported as the
adapter breaking (outcome `error`), never as a conformance failure.

An adapter declares the `Feature`s it supports. A case that needs a feature the adapter lacks is
reported `unsupported`, never failed.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.types import PresenceMessage

__all__ = [
    "CHANNEL_STATES",
    "Adapter",
    "AdapterChannel",
    "AdapterConnection",
    "AdapterPresence",
    "Feature",
    "HistoryPage",
    "Listener",
    "PresenceError",
    "PresenceMessage",
    "UsageError",
]

Listener = Callable[[PresenceMessage], Any]


class Feature(enum.StrEnum):
    """Optional capabilities of an implementation under test."""

    HISTORY = "history"  # presence.history()
    BINARY_DATA = "binary-data"  # bytes as member data
    ABRUPT_DISCONNECT = "abrupt-disconnect"  # conn.drop() and synthesized leaves
    CAPABILITIES = "capabilities"  # connect(capability=...) is enforced
    ANONYMOUS_CLIENTS = "anonymous-clients"  # connect(client_id=None)
    MULTIPLE_CONNECTIONS = "multiple-connections"  # more than one connection at once
    SYNC_COMPLETE = "sync-complete"  # presence.sync_complete()
    WAIT_FOR_SYNC_OPTION = "wait-for-sync-option"  # get(wait_for_sync=False)
    UNSUBSCRIBE_BY_ACTION = "unsubscribe-by-action"  # unsubscribe(actions=...) forms
    SUBSCRIBE_ACTION_LIST = "subscribe-action-list"  # subscribe(actions=[a, b])
    LARGE_MESSAGES = "large-messages"  # a 64 KiB message limit is enforced (40009)
    ARGUMENT_VALIDATION = "argument-validation"  # bad options are refused by the implementation
    WIRE_FRAMES = "wire-frames"  # the adapter exposes client frames seen by the reference server
    TRANSIENT_DISCONNECT = "transient-disconnect"  # conn.interrupt() / conn.reconnected()
    ENTER_CLIENT = "enter-client"  # presence.enter_client / update_client / leave_client
    REST_PRESENCE = "rest-presence"  # presence.rest_get() (RSP3)
    SERVER_FRAMES = "server-frames"  # the adapter exposes the frames a server sent its client
    CHANNEL_LIFECYCLE = "channel-lifecycle"  # channel.attach() / detach() / state()
    TOKEN_IDENTITY = (
        "token-identity"  # connect_with_token(): a token of one identity, claiming another
    )
    SERVER_CONTROL = "server-control"  # `server:` steps: the adapter's server takes commands
    CHANNEL_EVENTS = "channel-events"  # channel.state_changes(): its ChannelStateChanges


ALL_FEATURES: frozenset[Feature] = frozenset(Feature) - {
    Feature.WIRE_FRAMES,
    Feature.SERVER_FRAMES,
    Feature.TOKEN_IDENTITY,  # declared only by adapters that implement connect_with_token()
    Feature.SERVER_CONTROL,
    Feature.CHANNEL_EVENTS,
}


CHANNEL_STATES = (
    "initialized",
    "attaching",
    "attached",
    "detaching",
    "detached",
    "suspended",
    "failed",
)
"""The channel states (RTL2b), as `AdapterChannel.state()` names them."""


class UsageError(Exception):
    """A user mistake: unknown adapter, unknown option, malformed value. Exit code 2."""


class HistoryPage(abc.ABC):
    """One page of presence history (RTP12c: a PaginatedResult)."""

    items: list[PresenceMessage]

    @abc.abstractmethod
    def has_next(self) -> bool:
        """True if another page follows."""

    @abc.abstractmethod
    async def next(self) -> HistoryPage | None:
        """The next page, or None after the last one."""


class AdapterPresence(abc.ABC):
    """A channel's presence object, as seen by one connection."""

    @abc.abstractmethod
    async def enter(self, data: Any = None) -> None: ...

    @abc.abstractmethod
    async def update(self, data: Any = None) -> None: ...

    @abc.abstractmethod
    async def leave(self, data: Any = None) -> None: ...

    @abc.abstractmethod
    async def get(
        self,
        client_id: str | None = None,
        connection_id: str | None = None,
        wait_for_sync: bool = True,
    ) -> list[PresenceMessage]: ...

    @abc.abstractmethod
    async def subscribe(self, listener: Listener, actions: list[str] | None = None) -> None:
        """Register `listener` for all actions (None) or the given action names."""

    @abc.abstractmethod
    async def unsubscribe(
        self, listener: Listener | None = None, actions: list[str] | None = None
    ) -> None:
        """The four forms: (), (listener), (actions, listener), (actions)."""

    async def history(
        self,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        direction: str | None = None,
    ) -> HistoryPage:
        raise NotImplementedError("this adapter does not support history (Feature.HISTORY)")

    async def sync_complete(self) -> bool:
        raise NotImplementedError(
            "this adapter does not expose syncComplete (Feature.SYNC_COMPLETE)"
        )

    async def enter_client(self, client_id: str, data: Any = None) -> None:
        """Enter on behalf of `client_id` (RTP14, RTP15a): the connection has the wildcard
        clientId or none of its own, or `client_id` is its own (RTP15f refuses any other)."""
        raise NotImplementedError("this adapter has no enterClient (Feature.ENTER_CLIENT)")

    async def update_client(self, client_id: str, data: Any = None) -> None:
        """Update the data of the member `client_id` of this connection (RTP15a)."""
        raise NotImplementedError("this adapter has no updateClient (Feature.ENTER_CLIENT)")

    async def leave_client(self, client_id: str, data: Any = None) -> None:
        """Leave on behalf of `client_id` (RTP15a)."""
        raise NotImplementedError("this adapter has no leaveClient (Feature.ENTER_CLIENT)")

    async def rest_get(
        self,
        limit: int | None = None,
        client_id: str | None = None,
        connection_id: str | None = None,
    ) -> list[PresenceMessage]:
        """The channel's members read over REST (RSP3: `RestPresence#get`), first page only:
        at most `limit` members (RSP3a1), filtered by `client_id` (RSP3a2) and `connection_id`
        (RSP3a3). Needs no realtime attach."""
        raise NotImplementedError("this adapter has no REST presence get (Feature.REST_PRESENCE)")


class AdapterChannel(abc.ABC):
    """A channel on one connection."""

    name: str

    @property
    @abc.abstractmethod
    def presence(self) -> AdapterPresence: ...

    async def attach(self) -> None:
        """Attach the channel (RTL4) and wait until it is attached; a refusal (e.g. no
        capability for the channel, RTL14: the channel is then failed) raises `PresenceError`."""
        raise NotImplementedError("this adapter has no channel attach (Feature.CHANNEL_LIFECYCLE)")

    async def detach(self) -> None:
        """Detach the channel (RTL5) and wait until it is detached; a refusal (RTL5b: the
        channel is failed) raises `PresenceError`."""
        raise NotImplementedError("this adapter has no channel detach (Feature.CHANNEL_LIFECYCLE)")

    async def state(self) -> str:
        """The channel's state now (RTL2b), one of `CHANNEL_STATES` (lower case)."""
        raise NotImplementedError("this adapter has no channel state (Feature.CHANNEL_LIFECYCLE)")

    async def state_changes(self) -> list[dict[str, Any]]:
        """Every ChannelStateChange the channel emitted since the adapter first made it (RTL2a),
        UPDATE events included (RTL2g, RTL12, RTP17e), oldest first: each
        `{"event", "current", "previous", "resumed", "reason_code"}` (Feature.CHANNEL_EVENTS)."""
        raise NotImplementedError("this adapter has no channel events (Feature.CHANNEL_EVENTS)")


class AdapterConnection(abc.ABC):
    """One client connection. `id` is the implementation's connectionId, `client_id` its clientId."""

    id: str
    client_id: str | None

    @abc.abstractmethod
    def channel(self, name: str) -> AdapterChannel:
        """The channel object for `name` (the same object on every call)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close gracefully: the connection's members leave."""

    async def drop(self) -> None:
        """Disconnect abruptly (no goodbye): members stay for the grace period, then leave."""
        raise NotImplementedError(
            "this adapter cannot drop connections (Feature.ABRUPT_DISCONNECT)"
        )

    async def interrupt(self, seconds: float, resume: bool = True) -> None:
        """A transient disconnect (RTN15): cut the transport abruptly now (no CLOSE) and let the
        client reconnect by itself after `seconds`. With `resume` the server accepts the client's
        resume (RTN15c6: same connectionId, the messages sent meanwhile are delivered); without,
        it refuses it (RTN15c7: a new connectionId with an error), so the client re-enters its
        members (RTP17i). Returns once the transport is cut; presence calls made meanwhile are
        queued by the client until it is connected and attached again (RTP16)."""
        raise NotImplementedError(
            "this adapter cannot interrupt connections (Feature.TRANSIENT_DISCONNECT)"
        )

    async def reconnected(self) -> None:
        """After `interrupt`: wait until the client is connected again and its channels are
        attached again; `id` is then the connectionId of the connection now in use."""
        raise NotImplementedError(
            "this adapter cannot interrupt connections (Feature.TRANSIENT_DISCONNECT)"
        )


class Adapter(abc.ABC):
    """Entry point of an implementation under test. Subclass it and register it by name.

    Class attributes:
    - `name`: the adapter's name (`--adapter NAME`);
    - `features`: the `Feature`s supported;
    - `options`: accepted `--adapter-option` keys with a one-line description each;
    - `leave_grace`: seconds a dropped connection's members stay before their leave (Ably: 15);
    - `quiet_period`: seconds the runner watches for extra events after the expected ones arrived
      (an in-process implementation can use a few milliseconds, a network one needs more);
    - `drops_noticed_at_once`: True when the implementation has noticed a `drop()` by the time
      the call returns (in-process), so its `leave_grace` runs from then: once the grace has
      passed and `quiesce()` answers True, a dropped member nobody watches has left. False (the
      default; a server behind a socket notices later, and its timer may be late): the runner
      gives such a leave its whole wait budget after the grace.
    """

    name: ClassVar[str] = "unnamed"
    features: ClassVar[frozenset[Feature]] = ALL_FEATURES
    options: ClassVar[Mapping[str, str]] = {}
    leave_grace: float = 15.0
    quiet_period: float = 0.1
    drops_noticed_at_once: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            accepted = ", ".join(sorted(self.options)) or "none"
            raise UsageError(
                f"adapter {self.name!r}: unknown option(s) {', '.join(unknown)}; "
                f"accepted: {accepted}"
            )
        self.option_values: dict[str, str] = options

    def supports(self, feature: Feature | str) -> bool:
        return Feature(feature) in self.features

    async def start(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Prepare for a run (start servers, spawn processes). Called once before any connect."""

    async def stop(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release everything. Called once at the end, even after failures."""

    @abc.abstractmethod
    async def connect(
        self, client_id: str | None, capability: dict[str, list[str]] | None = None
    ) -> AdapterConnection:
        """Open a connection identified as `client_id` (None: anonymous) with `capability`
        (Ably capability JSON; None: everything) and wait until it is connected."""

    async def connect_with_token(
        self,
        client_id: str | None,
        capability: dict[str, list[str]] | None,
        token_client_id: str | None,
    ) -> AdapterConnection:
        """Feature `token-identity`: open a connection with a token issued for `token_client_id`
        (None: a token without a clientId; TK2c, TD6) while the connection claims `client_id`
        (the `clientId` of the connect request, RSA7e1), as a client holding someone else's
        token would. Raise `PresenceError` when the connection is refused, or when it comes up
        as the token's identity rather than the claimed one (a client library then fails it,
        RSA15a, RSA15c); return the connection only when it came up as claimed, or without a
        clientId, so the scenario can see what it may do."""
        raise NotImplementedError(f"adapter {self.name!r}: connect_with_token")

    async def quiesce(self) -> bool:
        """Wait until every event the implementation has produced so far has reached its
        listeners, and return True; return False (the default) when the adapter cannot tell.
        The runner then watches `quiet_period` for late extra events instead. An in-process
        implementation can answer precisely and make every case faster."""
        return False

    def wire_frames(self, connection_id: str) -> list[dict]:
        """Client->server frames the reference server recorded for a connection (WIRE_FRAMES)."""
        raise NotImplementedError

    def server_frames(self, connection_id: str) -> Any:
        """The frames the server sent to the adapter's own client on a connection, with the
        client's frames in between and the protocol problems the client noticed
        (SERVER_FRAMES): a `harness.ably_client.server_log.ServerFrames`."""
        raise NotImplementedError
