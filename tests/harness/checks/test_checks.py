"""Every check catches a deliberately broken implementation, and passes the reference.

Each mutant is the reference adapter with one behaviour broken (a `ReferencePresence` or
`ReferenceConnection` subclass). For every registered check there is a case: a scenario, a
mutant, the requirement the check must report, and the outcome the case must get. The reference
adapter runs every one of those scenarios without a single violation or note.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from presence_conformance.harness.adapter import Feature
from presence_conformance.harness.adapters.reference import (
    ReferenceAdapter,
    ReferenceConnection,
    ReferencePresence,
)
from presence_conformance.harness.checks import CHECKS, REGISTRY
from presence_conformance.harness.mutants import get_mutant
from presence_conformance.harness.mutants.client_map import (
    NoReentryOnAttached,
    ReentryFailureSilent,
    client_map_class,
)
from presence_conformance.harness.results import CaseResult, Outcome
from presence_conformance.harness.run.runner import RunSettings
from presence_conformance.harness.scenario import load_scenario, load_scenarios
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.types import Action, PresenceMessage
from support import ROOT, make_scenario, op, run_case

from presence_conformance import spec

SETTINGS = RunSettings(op_timeout=0.3, quiet_period=0.02)


# -- building mutants ------------------------------------------------------------------------------


def adapter_with(
    presence: type[ReferencePresence] = ReferencePresence,
    connection: type[ReferenceConnection] = ReferenceConnection,
    **attrs: Any,
) -> type[ReferenceAdapter]:
    """A reference adapter class using the given presence and connection classes."""
    conn_cls = type("MutantConnection", (connection,), {"presence_class": presence})
    return type("MutantAdapter", (ReferenceAdapter,), {"connection_class": conn_cls, **attrs})


def event_mutant(
    transform: Callable[[PresenceMessage], list[PresenceMessage]],
) -> type[ReferenceAdapter]:
    """Listeners get `transform(event)` instead of the event."""

    class Presence(ReferencePresence):
        def wrap_listener(self, listener: Any) -> Any:
            def wrapped(message: PresenceMessage) -> None:
                for out in transform(message):
                    listener(out)

            return wrapped

    return adapter_with(Presence)


def drops_updates(m: PresenceMessage) -> list[PresenceMessage]:
    return [] if m.action is Action.UPDATE else [m]


def duplicate_present(m: PresenceMessage) -> list[PresenceMessage]:
    return [m, m] if m.action is Action.PRESENT else [m]


def wrong_connection_id(m: PresenceMessage) -> list[PresenceMessage]:
    return [dataclasses.replace(m, connection_id="bogus")]


def reenter_as_update(m: PresenceMessage) -> list[PresenceMessage]:
    return [m.with_action(Action.UPDATE) if m.action is Action.ENTER and m.data == "again" else m]


def leave_without_data(m: PresenceMessage) -> list[PresenceMessage]:
    return [dataclasses.replace(m, data=None) if m.action is Action.LEAVE else m]


def malformed_timestamp(m: PresenceMessage) -> list[PresenceMessage]:
    return [dataclasses.replace(m, timestamp=str(m.timestamp))]


def empty_id(m: PresenceMessage) -> list[PresenceMessage]:
    return [dataclasses.replace(m, id="")]


def same_id(m: PresenceMessage) -> list[PresenceMessage]:
    return [dataclasses.replace(m, id=f"{m.connection_id}:0:0")]


def uuid_ids(m: PresenceMessage) -> list[PresenceMessage]:
    return [dataclasses.replace(m, id=f"evt-{abs(hash((m.id, m.action))) % 10**8}")]


def bytes_as_text(m: PresenceMessage) -> list[PresenceMessage]:
    data = m.data.decode("latin-1") if isinstance(m.data, bytes) else m.data
    return [dataclasses.replace(m, data=data)]


def synthesized_id_like_published(m: PresenceMessage) -> list[PresenceMessage]:
    if m.action is Action.LEAVE and not m.id.startswith(m.connection_id):
        return [dataclasses.replace(m, id=f"{m.connection_id}:99:0")]
    return [m]


class Reorders(ReferencePresence):
    """Holds back each member's first update until that member's next event."""

    def wrap_listener(self, listener: Any) -> Any:
        held: dict[str, PresenceMessage] = {}

        def wrapped(message: PresenceMessage) -> None:
            key = message.member_key
            if message.action is Action.UPDATE and key not in held:
                held[key] = message
                return
            listener(message)
            if key in held and held[key] is not None:
                listener(held[key])
                held[key] = None  # type: ignore[assignment]

        return wrapped


class LeaksChannels(ReferencePresence):
    """Every event of one channel also reaches the connection's listeners on its other channels."""

    def wrap_listener(self, listener: Any) -> Any:
        registry = self.adapter.__dict__.setdefault("leak_registry", {})
        mine = registry.setdefault(id(self.service_presence._conn), [])
        mine.append((self.channel_name, listener))
        channel = self.channel_name

        def wrapped(message: PresenceMessage) -> None:
            for name, other in list(mine):
                if name == channel or other is listener:
                    listener(message) if other is listener else None
                else:
                    other(message)

        return wrapped


class UnsubscribeRemovesAll(ReferencePresence):
    """unsubscribe(action, listener) removes the listener altogether."""

    async def unsubscribe(self, listener: Any = None, actions: Any = None) -> None:
        await super().unsubscribe(listener, None if listener is not None else actions)


class KeepsLeftMembers(ReferencePresence):
    """get() on other connections still shows members that left."""

    async def get(
        self, client_id: Any = None, connection_id: Any = None, wait_for_sync: bool = True
    ) -> list[PresenceMessage]:
        members = await super().get(client_id, connection_id, wait_for_sync)
        gone = [
            m.with_action(Action.PRESENT)
            for m in self.adapter.__dict__.get("left", [])
            if m.connection_id != self.service_presence._conn.id
        ]
        return members + gone

    async def leave(self, data: Any = None) -> None:
        before = await super().get(
            self.service_presence._conn.client_id, self.service_presence._conn.id
        )
        await super().leave(data)
        self.adapter.__dict__.setdefault("left", []).extend(before)


class IgnoresListenerFilter(ReferencePresence):
    async def subscribe(self, listener: Any, actions: Any = None) -> None:
        await super().subscribe(listener, None)


class NoEcho(ReferencePresence):
    def wrap_listener(self, listener: Any) -> Any:
        own = self.service_presence._conn.id

        def wrapped(message: PresenceMessage) -> None:
            if message.connection_id != own:
                listener(message)

        return wrapped


class WrongCodes(ReferencePresence):
    async def enter(self, data: Any = None) -> None:
        try:
            await super().enter(data)
        except PresenceError as exc:
            raise PresenceError(40000 if exc.code == 91000 else exc.code, exc.message) from None


class CodelessErrors(ReferencePresence):
    async def history(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().history(*args, **kwargs)
        except PresenceError as exc:
            error = PresenceError(0, exc.message)
            error.code = None  # type: ignore[assignment]
            raise error from None


class HistoryIgnoresBounds(ReferencePresence):
    async def history(
        self, start: Any = None, end: Any = None, limit: Any = None, direction: Any = None
    ) -> Any:
        return await super().history(None, None, limit, direction)


class NeverSynced(ReferencePresence):
    async def sync_complete(self) -> bool:
        return False


class AlwaysSynced(ReferencePresence):
    async def sync_complete(self) -> bool:
        return True


class Unfiltered(ReferencePresence):
    async def get(
        self, client_id: Any = None, connection_id: Any = None, wait_for_sync: bool = True
    ) -> list[PresenceMessage]:
        return await super().get(None, connection_id, wait_for_sync)


class EnterAction(ReferencePresence):
    async def get(
        self, client_id: Any = None, connection_id: Any = None, wait_for_sync: bool = True
    ) -> list[PresenceMessage]:
        members = await super().get(client_id, connection_id, wait_for_sync)
        return [m.with_action(Action.ENTER) for m in members]


class InventsMembers(ReferencePresence):
    async def get(
        self, client_id: Any = None, connection_id: Any = None, wait_for_sync: bool = True
    ) -> list[PresenceMessage]:
        members = await super().get(client_id, connection_id, wait_for_sync)
        if not wait_for_sync:
            members = [
                *members,
                PresenceMessage(Action.PRESENT, "ghost", "conn-ghost", None, 1, "conn-ghost:0:0"),
            ]
        return members


class HidesAlice(ReferencePresence):
    """Other connections never see alice in get()."""

    async def get(
        self, client_id: Any = None, connection_id: Any = None, wait_for_sync: bool = True
    ) -> list[PresenceMessage]:
        members = await super().get(client_id, connection_id, wait_for_sync)
        own = self.service_presence._conn.id
        return [m for m in members if m.client_id != "alice" or m.connection_id == own]


class HistoryWithPresent(ReferencePresence):
    def history_items(self, items: list[PresenceMessage]) -> list[PresenceMessage]:
        return [*items, *(m.with_action(Action.PRESENT) for m in items[:1])]


class HistoryForwardsByDefault(ReferencePresence):
    async def history(
        self, start: Any = None, end: Any = None, limit: Any = None, direction: Any = None
    ) -> Any:
        return await super().history(start, end, limit, direction or "forwards")


class HistoryDefaultLimit10(ReferencePresence):
    async def history(
        self, start: Any = None, end: Any = None, limit: Any = None, direction: Any = None
    ) -> Any:
        return await super().history(start, end, limit or 10, direction)


class HistoryDefaultLimit10Truncated(HistoryDefaultLimit10):
    """Ten items and no next page: the rest of the history cannot be reached."""

    async def history(self, *args: Any, **kwargs: Any) -> Any:
        page = await super().history(*args, **kwargs)
        page.has_next = lambda: False
        return page


class HistoryAcceptsLargeLimit(ReferencePresence):
    async def history(
        self, start: Any = None, end: Any = None, limit: Any = None, direction: Any = None
    ) -> Any:
        return await super().history(start, end, min(limit, 1000) if limit else limit, direction)


class HistoryDescendingStamps(ReferencePresence):
    def history_items(self, items: list[PresenceMessage]) -> list[PresenceMessage]:
        # descending, yet within the case's wall-clock window (message.timestamp)
        top = int(time.time() * 1000) + 60_000
        return [dataclasses.replace(m, timestamp=top - n) for n, m in enumerate(items)]


class RefusesArrays(ReferencePresence):
    async def enter(self, data: Any = None) -> None:
        if isinstance(data, list):
            raise PresenceError(40013, "data: arrays are not supported")
        await super().enter(data)


class LargeEnterLeaksState(ReferencePresence):
    """Refuses a too-large enter, but only after having applied it."""

    async def enter(self, data: Any = None) -> None:
        model = self.service_presence._model
        limit = model.max_message_size
        model.max_message_size = 10**9
        try:
            await super().enter(data)
        finally:
            model.max_message_size = limit
        if isinstance(data, str) and len(data) > limit:
            raise PresenceError(40009, "data: message too large")


class DropLeavesAtOnce(ReferenceConnection):
    async def drop(self) -> None:
        await self.service_connection.close()


class CloseLeavesAfterGrace(ReferenceConnection):
    """A close handled like a drop whose grace outlasts the runner's wait budget (0.3 s)."""

    async def close(self) -> None:
        self.service_connection._service.leave_grace = 0.5
        await self.service_connection.drop()


class ReusesConnectionIds(ReferenceAdapter):
    """A reconnecting client gets the connectionId of its first connection."""

    async def connect(self, client_id: Any, capability: Any = None) -> ReferenceConnection:
        conn = await super().connect(client_id, capability)
        first = self.__dict__.setdefault("first_ids", {}).setdefault(client_id, conn.id)
        conn.id = first
        return conn


# -- scenarios -------------------------------------------------------------------------------------


scenario = partial(make_scenario, requirements=("order.exactly-once",), case_id="checks/x")


WATCH = op("subscribe", "bob", listener="L")
LIFE = [
    WATCH,
    op("enter", "alice", data="hi"),
    op("update", "alice", data="typing"),
    op("leave", "alice"),
]
REENTER = [
    WATCH,
    op("enter", "alice", data="hi"),
    op("enter", "alice", data="again"),
    op("leave", "alice"),
]
TWO_CHANNELS = scenario(
    [
        op("subscribe", "bob", "room", listener="R"),
        op("subscribe", "bob", "other", listener="O"),
        op("enter", "alice", "room", data="hi"),
    ],
    channels=("room", "other"),
)
FILTERS = scenario(
    [
        op("enter", "alice", data="a"),
        op("enter", "bob", data="b"),
        op(
            "get",
            "bob",
            client_id="alice",
            expect=[{"client": "alice"}],
            requirements=["get.filter-client-id"],
        ),
    ]
)
HISTORY = scenario(
    [
        *LIFE,
        op("history", "bob"),
        op("history", "bob", pages="all"),
        op(
            "history",
            "bob",
            direction="forwards",
            expect_count=3,
            requirements=["history.returns-events"],
        ),
    ]
)
MANY = scenario(
    [
        *(op("update", "alice", data=str(n)) for n in range(12)),
        op("history", "bob", expect_count=12, requirements=["history.limit-default-100"]),
    ]
)
DROP = scenario(
    [WATCH, op("enter", "alice", data="hi"), {"drop": {"client": "alice"}}, op("get", "bob")]
)
CLOSE = scenario(
    [WATCH, op("enter", "alice", data="hi"), {"close": {"client": "alice"}}, op("get", "bob")]
)
RECONNECT = scenario(
    [
        op("enter", "alice"),
        {"close": {"client": "alice"}},
        {"connect": {"client": "alice"}},
        op("enter", "alice"),
    ]
)
SYNC_GET = scenario(
    [
        op("enter", "alice", data="x"),
        op("get", "bob"),
        op("sync_complete", "bob", expect=True, requirements=["sync.converges"]),
    ]
)
EXPECT_UPDATES = scenario(
    [
        *LIFE,
        {
            "expect_events": {
                "listener": "L",
                "events": [
                    {"action": "enter", "client": "alice"},
                    {"action": "update", "client": "alice"},
                    {"action": "leave", "client": "alice"},
                ],
                "requirements": ["update.event-emitted"],
            }
        },
    ]
)

INTERRUPT = make_scenario(
    [
        op("enter", "alice", data="a"),
        {"interrupt": {"client": "alice", "seconds": 0.05}},
        op("get", "bob"),
    ],
    requirements=("disconnect.resume-keeps-members",),
)
REST_FILTER = make_scenario(
    [
        op("enter", "alice", data="a"),
        op("enter", "bob", data="b"),
        op("rest_get", "bob", client_id="alice"),
    ],
    requirements=("get.rest-filter-client-id",),
)

DETACH_THEN_ENTER = make_scenario(
    [
        op("subscribe", "alice", listener="w"),
        op("enter", "alice", data="a"),
        op("enter", "bob", data="b"),
        op("detach", "alice"),
        op("enter", "alice", data="again"),
    ],
    requirements=("channel.enter-when-detached-or-failed",),
)

# check -> (mutant adapter class, scenario, requirement it must report, outcome)
CASES: dict[str, tuple[type[ReferenceAdapter], Any, str, Outcome]] = {
    "reentered_after_reattach": (
        NoReentryOnAttached,  # type: ignore[dict-item]
        load_scenario(ROOT / "scenarios" / "client" / "detached-reenters-own-member.yaml"),
        "client.reenter-after-reattach",
        Outcome.NON_STRICT,
    ),
    "reentry_failure_update": (
        ReentryFailureSilent,  # type: ignore[dict-item]
        load_scenario(ROOT / "scenarios" / "client" / "refused-reentry-update.yaml"),
        "channel.reentry-failure-update",
        Outcome.NON_STRICT,
    ),
    "client_presence_matches_oracle": (
        client_map_class("sync-never-purges"),  # type: ignore[dict-item]
        load_scenario(ROOT / "scenarios" / "client" / "injected-member-purged.yaml"),
        "client.sync-purges-unseen-members",
        Outcome.FAIL,
    ),
    "suspended_map_maintained": (
        client_map_class("suspended-emits-leaves"),  # type: ignore[dict-item]
        load_scenario(ROOT / "scenarios" / "channel" / "suspended-resync-events.yaml"),
        "channel.suspended-map-maintained",
        Outcome.NON_STRICT,
    ),
    "interrupt_connection_id": (
        get_mutant("resume-gives-new-connection"),
        INTERRUPT,
        "disconnect.resume-keeps-members",
        Outcome.FAIL,
    ),
    "channel_lifecycle": (
        get_mutant("enter-reattaches-detached"),
        DETACH_THEN_ENTER,
        "channel.enter-when-detached-or-failed",
        Outcome.FAIL,
    ),
    "detached_listeners_silent": (
        get_mutant("detach-emits-leaves"),
        DETACH_THEN_ENTER,
        "channel.detach-clears-silently",
        Outcome.FAIL,
    ),
    "rest_get_members": (
        get_mutant("rest-get-ignores-filters"),
        REST_FILTER,
        "get.rest-filter-client-id",
        Outcome.FAIL,
    ),
    "missing_events": (
        event_mutant(drops_updates),
        scenario(LIFE),
        "update.event-emitted",
        Outcome.FAIL,
    ),
    "extra_events": (
        adapter_with(LeaksChannels),
        TWO_CHANNELS,
        "order.channel-isolation",
        Outcome.FAIL,
    ),
    "member_order": (adapter_with(Reorders), scenario(LIFE), "order.per-member", Outcome.FAIL),
    "event_fields": (
        event_mutant(wrong_connection_id),
        scenario(LIFE),
        "message.connection-id",
        Outcome.FAIL,
    ),
    "open_behaviours": (
        event_mutant(reenter_as_update),
        scenario(REENTER),
        "enter.when-present",
        Outcome.PASS,
    ),
    "expected_events": (
        event_mutant(drops_updates),
        EXPECT_UPDATES,
        "update.event-emitted",
        Outcome.FAIL,
    ),
    "sync_complete": (
        adapter_with(NeverSynced),
        SYNC_GET,
        "sync.complete-after-attach",
        Outcome.FAIL,
    ),
    "sync_before_attach": (
        adapter_with(AlwaysSynced),
        scenario([op("sync_complete", "bob"), op("enter", "bob")]),
        "sync.complete-before-attach",
        Outcome.PASS,
    ),
    "convergence": (
        adapter_with(HidesAlice),
        scenario([WATCH, op("enter", "alice")]),
        "sync.converges",
        Outcome.FAIL,
    ),
    "grace_period": (
        adapter_with(connection=DropLeavesAtOnce),
        DROP,
        "disconnect.grace-period",
        Outcome.PASS,
    ),
    "close_leaves_promptly": (
        adapter_with(connection=CloseLeavesAfterGrace),
        CLOSE,
        "disconnect.close-leaves-promptly",
        Outcome.NON_STRICT,
    ),
    "sync_expect": (adapter_with(NeverSynced), SYNC_GET, "sync.converges", Outcome.FAIL),
    "get_members": (adapter_with(Unfiltered), FILTERS, "get.filter-client-id", Outcome.FAIL),
    "get_action_present": (adapter_with(EnterAction), FILTERS, "get.action-present", Outcome.FAIL),
    "get_without_sync": (
        adapter_with(InventsMembers),
        scenario([op("enter", "alice"), op("get", "bob", wait_for_sync=False)]),
        "get.wait-for-sync-false",
        Outcome.FAIL,
    ),
    "get_expect": (adapter_with(Unfiltered), FILTERS, "get.filter-client-id", Outcome.FAIL),
    "history_contents": (
        adapter_with(HistoryWithPresent),
        scenario(
            [
                *LIFE,
                op("history", "bob"),
                op("history", "bob", pages="all"),
                op("history", "bob", direction="forwards"),
            ]
        ),
        "history.no-present",
        Outcome.NON_STRICT,
    ),
    "history_timestamps": (
        adapter_with(HistoryDescendingStamps),
        HISTORY,
        "history.direction-forwards",
        Outcome.FAIL,
    ),
    "history_query": (
        adapter_with(HistoryForwardsByDefault),
        HISTORY,
        "history.direction-default-backwards",
        Outcome.FAIL,
    ),
    "history_expect_count": (
        adapter_with(HistoryDefaultLimit10Truncated),
        MANY,
        "history.limit-default-100",
        Outcome.FAIL,
    ),
    "message_schema": (
        event_mutant(malformed_timestamp),
        scenario(LIFE),
        "message.schema",
        Outcome.FAIL,
    ),
    "message_fields": (event_mutant(empty_id), scenario(LIFE), "message.id", Outcome.FAIL),
    "message_ids_unique": (event_mutant(same_id), scenario(LIFE), "message.id", Outcome.FAIL),
    "message_id_format": (
        event_mutant(uuid_ids),
        scenario(LIFE),
        "message.id-format",
        Outcome.NON_STRICT,
    ),
    "data_round_trip": (
        event_mutant(bytes_as_text),
        scenario([WATCH, op("enter", "alice", data=b"\x00\xff")]),
        "data.binary",
        Outcome.FAIL,
    ),
    "connection_ids": (
        ReusesConnectionIds,
        RECONNECT,
        "disconnect.reconnect-new-member",
        Outcome.FAIL,
    ),
    "refusals": (
        adapter_with(HistoryAcceptsLargeLimit),
        scenario([op("enter", "alice"), op("history", "bob", limit=1001)]),
        "history.limit-max-1000",
        Outcome.NON_STRICT,  # a SHOULD: capping at 1000 also meets RSP4b3
    ),
    "unexpected_errors": (
        adapter_with(RefusesArrays),
        scenario([op("enter", "alice", data=[1, 2])]),
        "data.json-array",
        Outcome.NON_STRICT,
    ),
    "refused_left_no_trace": (
        adapter_with(LargeEnterLeaksState),
        scenario([WATCH, op("enter", "alice", data={"$repeat": "x", "times": 70000})]),
        "error.state-unchanged",
        Outcome.FAIL,
    ),
}

EXTRA_CASES = {  # more requirement IDs worth pinning down, with the check expected to find them
    "duplicate present": (
        "extra_events",
        event_mutant(duplicate_present),
        scenario([op("enter", "alice"), WATCH]),
        "sync.no-duplicate-present",
        Outcome.FAIL,
    ),
    "leave without data": (
        "open_behaviours",
        event_mutant(leave_without_data),
        scenario(LIFE),
        "leave.data-defaults-to-member-data",
        Outcome.NON_STRICT,
    ),
    "synthesized leave id": (
        "message_id_format",
        event_mutant(synthesized_id_like_published),
        DROP,
        "disconnect.synthesized-leave-id",
        Outcome.NON_STRICT,
    ),
    "unsubscribe(action, listener) removes everything": (
        "missing_events",
        adapter_with(UnsubscribeRemovesAll),
        scenario(
            [
                op("subscribe", "bob", listener="L", actions=["enter", "leave"]),
                op("subscribe", "bob", listener="M"),
                op("unsubscribe", "bob", listener="L", actions="leave"),
                op("enter", "alice"),
            ]
        ),
        "unsubscribe.action-listener",
        Outcome.FAIL,
    ),
    "get keeps members that left": (
        "get_members",
        adapter_with(KeepsLeftMembers),
        scenario([op("enter", "alice"), op("leave", "alice"), op("get", "bob")]),
        "leave.removes-member",
        Outcome.FAIL,
    ),
    "listener filter ignored": (
        "extra_events",
        adapter_with(IgnoresListenerFilter),
        scenario(
            [
                op("subscribe", "bob", listener="L", actions="enter"),
                op("enter", "alice"),
                op("update", "alice"),
            ]
        ),
        "subscribe.single-action",
        Outcome.FAIL,
    ),
    "no echo": (
        "missing_events",
        adapter_with(NoEcho),
        scenario([op("subscribe", "alice", listener="L"), op("enter", "alice")]),
        "enter.echoed-to-own-connection",
        Outcome.NON_STRICT,
    ),
    "wrong error code": (
        "refusals",
        adapter_with(WrongCodes),
        scenario([op("enter", "anon")], clients={"anon": {"client_id": None}}),
        "error.documented-code",  # the refusal is right; RTP8j names no code: a SHOULD
        Outcome.NON_STRICT,
    ),
    "error without a code": (
        "refusals",
        adapter_with(CodelessErrors),
        scenario([op("history", "bob", direction="sideways")]),
        "error.has-code",
        Outcome.NON_STRICT,
    ),
    "history ignores bounds": (
        "history_query",
        adapter_with(HistoryIgnoresBounds),
        scenario(
            [
                op("enter", "alice", data="a", id="a"),
                op("update", "alice", data="b"),
                op("update", "alice", data="c", id="c"),
                op("leave", "alice"),
                op("history", "bob", start={"at": "c"}),
            ]
        ),
        "history.start-end-inclusive",
        Outcome.FAIL,
    ),
    "default limit": (
        "history_query",
        adapter_with(HistoryDefaultLimit10Truncated),
        MANY,
        "history.limit-default-100",
        Outcome.FAIL,
    ),
    "short default pages": (  # a limit is a maximum (RSP4b3): ten a page, more follow
        "history_query",
        adapter_with(HistoryDefaultLimit10),
        MANY,
        "history.full-pages",
        Outcome.NON_STRICT,
    ),
    "short default pages, expect_count": (
        "history_expect_count",
        adapter_with(HistoryDefaultLimit10),
        MANY,
        "history.full-pages",
        Outcome.NON_STRICT,
    ),
}


async def run(
    adapter_cls: type[ReferenceAdapter], case: Any, options: dict | None = None
) -> CaseResult:
    timed = any(step.kind == "history" for step in case.iter_steps())
    # distinct timestamps, so that the order of history items is defined
    options = {"leave_grace": "0.02", **({"op_delay": "0.002"} if timed else {}), **(options or {})}
    return await run_case(case, adapter_cls(options), SETTINGS)


def found(result: CaseResult) -> set[tuple[str, str]]:
    return {(v.check, v.requirement) for v in result.violations + result.infos}


def test_every_check_has_a_case() -> None:
    """Every check outside the wire families has a mutant here: the client frame checks have
    theirs in test_wire_checks.py, the server frame checks in test_server_mutants.py."""
    elsewhere = ("wire", "server_frames")
    assert set(CASES) == {name for name, info in REGISTRY.items() if info.family not in elsewhere}


def test_checks_cover_the_catalogue() -> None:
    catalogue = spec.load_requirements()
    enforced = {r for ids in CHECKS.values() for r in ids}
    assert enforced <= set(catalogue.ids())
    tagged = {r for s in load_scenarios(spec_root()) for r in s.requirements}
    uncovered = [r.id for r in catalogue if r.id not in enforced | tagged]
    assert not uncovered


def spec_root() -> Any:
    return ROOT / "scenarios"


@pytest.mark.parametrize("check", sorted(CASES))
def test_check_catches_its_mutant(check: str) -> None:
    adapter_cls, case, requirement, outcome = CASES[check]
    result = asyncio.run(run(adapter_cls, case))
    assert (check, requirement) in found(result), (
        result.outcome,
        result.error,
        sorted(found(result)),
    )
    assert result.outcome is outcome, (result.outcome, result.error, sorted(found(result)))
    for v in result.violations + result.infos:
        assert v.level == spec.load_requirements().by_id(v.requirement).level


@pytest.mark.parametrize("name", sorted(EXTRA_CASES))
def test_more_mutants(name: str) -> None:
    check, adapter_cls, case, requirement, outcome = EXTRA_CASES[name]
    result = asyncio.run(run(adapter_cls, case))
    assert (check, requirement) in found(result), (result.outcome, sorted(found(result)))
    assert result.outcome is outcome, (result.outcome, sorted(found(result)))


def all_scenarios() -> list[tuple[str, Any]]:
    out = [(name, case) for name, (_, case, _, _) in CASES.items()]
    out += [(name, case) for name, (_, _, case, _, _) in EXTRA_CASES.items()]
    return out


@pytest.mark.parametrize("name", [n for n, _ in all_scenarios()])
def test_reference_passes_without_notes(name: str) -> None:
    case = dict(all_scenarios())[name]
    # server: steps need a wire: there the unbroken client oracle is the reference client
    wired = Feature.SERVER_CONTROL in case.needed_features()
    result = asyncio.run(run(client_map_class("oracle") if wired else ReferenceAdapter, case))
    assert result.outcome is Outcome.PASS, (result.error, result.violations)
    assert result.violations == [] and result.infos == []


class CrossMemberReorder(ReferencePresence):
    """Delivers each batch of events (one event-loop turn) with the members in reverse order."""

    def wrap_listener(self, listener: Any) -> Any:
        batch: list[PresenceMessage] = []
        adapter = self.adapter

        def flush() -> None:
            by_member: dict[str, list[PresenceMessage]] = {}
            for m in batch:
                by_member.setdefault(m.member_key, []).append(m)
            batch.clear()
            for key in sorted(by_member, reverse=True):
                for m in by_member[key]:
                    listener(m)
            adapter.pending -= 1

        def wrapped(message: PresenceMessage) -> None:
            if not batch:
                adapter.pending += 1
                asyncio.get_running_loop().call_later(0.002, flush)
            batch.append(message)

        return wrapped


class CrossMemberAdapter(adapter_with(CrossMemberReorder)):  # type: ignore[misc]
    pending = 0

    async def quiesce(self) -> bool:
        while self.pending or not await super().quiesce():
            await asyncio.sleep(0.001)
        return True


def test_cross_member_order_is_free() -> None:
    case = scenario(
        [
            op("subscribe", "carol", listener="L"),
            {"concurrently": [op("enter", "alice", data="a"), op("enter", "bob", data="b")]},
            {"concurrently": [op("update", "alice", data="a2"), op("update", "bob", data="b2")]},
        ],
        clients={"alice": {}, "bob": {}, "carol": {}},
    )
    result = asyncio.run(run(CrossMemberAdapter, case))
    received = [e["value"]["clientId"] for e in result.history if e["type"] == "event"]
    assert received[:2] == ["bob", "alice"]  # the mutant really reordered
    assert result.outcome is Outcome.PASS, result.violations
    assert result.violations == [] and result.infos == []


# -- the errors checks' requirement tables -----------------------------------------------------


def fake_op(
    kind: str,
    *,
    code: int | None = None,
    argument: str | None = None,
    was_present: bool = True,
    fresh_attach: bool = False,
    form: str | None = None,
    anonymous: bool = False,
    **args: Any,
) -> Any:
    """What the tables read of an `OpRecord`: the step, the model's refusal, the member state."""
    from types import SimpleNamespace

    refusal = None if code is None else SimpleNamespace(code=code, argument=argument)
    return SimpleNamespace(
        kind=kind,
        step=SimpleNamespace(kind=kind, args=args),
        model_error=refusal,
        was_present=was_present,
        fresh_attach=fresh_attach,
        form=form,
        anonymous=anonymous,
    )


def refusal_cases() -> list[tuple[Any, str]]:
    from presence_conformance.reference_impl import errors as codes

    return [
        (
            fake_op("enter_client", code=codes.INVALID_CLIENT_ID),
            "enter.client-id-mismatch",  # RTP15f
        ),
        (fake_op("leave", code=codes.NO_CLIENT_ID), "leave.without-client-id"),
        (fake_op("enter", code=codes.NO_CLIENT_ID), "enter.requires-client-id"),
        (fake_op("enter", code=codes.INVALID_CLIENT_ID), "enter.requires-client-id"),
        (fake_op("leave", code=codes.CAPABILITY_DENIED), "enter.requires-presence-capability"),
        (fake_op("get", code=codes.CAPABILITY_DENIED), "error.capability-denied"),
        (fake_op("enter", code=codes.MESSAGE_TOO_LARGE), "data.size-limit"),
        (fake_op("update", code=codes.INVALID_DATA), "data.unsupported-type"),
        (fake_op("subscribe", code=40000, argument="action"), "subscribe.invalid-action"),
        (fake_op("history", code=40000, argument="limit", limit=1001), "history.limit-max-1000"),
        (fake_op("history", code=40000, argument="limit", limit=0), "history.limit-positive"),
        (fake_op("history", code=40000, argument="limit", limit="x"), "history.limit-positive"),
        (fake_op("history", code=40000, argument="direction"), "history.direction-invalid"),
        (fake_op("history", code=40000, argument="end"), "history.start-after-end"),
        (fake_op("history", code=40000, argument="start"), "history.start-after-end"),
        (fake_op("get", code=40000, argument="other"), "error.has-code"),
    ]


UNEXPECTED_CASES = [
    (fake_op("enter_client", anonymous=True), "enter.client-on-anonymous-connection"),
    (fake_op("update_client", data="a"), "enter.client-on-behalf"),
    (fake_op("rest_get"), "get.rest-members"),
    (fake_op("leave", was_present=False, fresh_attach=True), "leave.when-not-present"),
    (fake_op("update", was_present=False), "update.when-not-present-enters"),
    (fake_op("update", was_present=False, fresh_attach=True, data=b"x"), "data.binary"),
    (fake_op("enter", data=[1]), "data.json-array"),
    (fake_op("update", data="é"), "data.unicode"),
    (fake_op("leave", fresh_attach=True, data="é"), "data.unicode"),
    (fake_op("leave", data="é"), "leave.data-given"),  # a plain leave: its data does not decide
    (fake_op("enter", fresh_attach=True, data="a"), "enter.implicit-attach"),
    (fake_op("enter", data={"a": 1}), "enter.adds-member"),
    (fake_op("update"), "update.null-data"),
    (fake_op("update", data="a"), "update.changes-data"),
    (fake_op("leave"), "leave.removes-member"),
    (fake_op("get", fresh_attach=True, wait_for_sync=False), "get.implicit-attach"),
    (fake_op("get", wait_for_sync=False, client_id="a"), "get.wait-for-sync-false"),
    (fake_op("get", client_id="a", connection_id="c"), "get.filter-both"),
    (fake_op("get", client_id="a"), "get.filter-client-id"),
    (fake_op("get", connection_id="c"), "get.filter-connection-id"),
    (fake_op("get", wait_for_sync=True), "get.returns-members"),
    (fake_op("subscribe", fresh_attach=True, actions=["enter"]), "subscribe.implicit-attach"),
    (fake_op("subscribe", actions=[]), "subscribe.all-actions"),
    (fake_op("subscribe", actions=["enter"]), "subscribe.single-action"),
    (fake_op("subscribe", actions=["enter", "leave"]), "subscribe.action-list"),
    (fake_op("unsubscribe"), "unsubscribe.all"),
    (fake_op("unsubscribe", form="listener"), "unsubscribe.listener"),
    (fake_op("unsubscribe", form="action-listener"), "unsubscribe.action-listener"),
    (fake_op("unsubscribe", form="action"), "unsubscribe.action"),
    (fake_op("history", limit=1000, direction="forwards"), "history.limit-max-1000"),
    (fake_op("history", direction="forwards", start=1), "history.direction-forwards"),
    (fake_op("history", end=5), "history.start-end-inclusive"),
    (fake_op("history", limit=10), "history.returns-events"),
    (fake_op("sync_complete"), "sync.complete-after-attach"),
]


def test_error_checks_register_exactly_their_tables() -> None:
    """The decorators' ID lists are derived from the tables: nothing registered that no row can
    report, no row whose requirement is not registered."""
    from presence_conformance.harness.checks.errors import (
        REFUSAL_TABLE,
        UNEXPECTED_TABLE,
        requirements_of,
    )

    # plus the SHOULD a refusal with an unexpected code is reported under
    # plus the identity requirement, which every operation of an impostor's client concerns
    assert CHECKS["refusals"] == (
        "member.identity-from-credential",
        *requirements_of(REFUSAL_TABLE),
        "error.documented-code",
    )
    assert CHECKS["unexpected_errors"] == requirements_of(UNEXPECTED_TABLE)
    assert len(CHECKS["refusals"]) == 15 and len(CHECKS["unexpected_errors"]) == 33
    assert len(REFUSAL_TABLE) == len(CHECKS["refusals"]) - 2  # each requirement one row
    assert len(UNEXPECTED_TABLE) == len(CHECKS["unexpected_errors"])


def test_error_tables_pick_the_first_row_that_applies() -> None:
    """Every row of both tables is reached by some operation (none is shadowed by the rows
    above it), and the last rows catch everything else."""
    from presence_conformance.harness.checks.errors import (
        REFUSAL_TABLE,
        UNEXPECTED_TABLE,
        refusal_requirement,
        requirements_of,
        unexpected_requirement,
    )

    refusals = refusal_cases()
    assert [(c[0], refusal_requirement(c[0])) for c in refusals] == refusals
    assert {r for _, r in refusals} == set(requirements_of(REFUSAL_TABLE))
    got = [(c[0], unexpected_requirement(c[0])) for c in UNEXPECTED_CASES]
    assert got == UNEXPECTED_CASES
    assert {r for _, r in UNEXPECTED_CASES} == set(requirements_of(UNEXPECTED_TABLE))
