"""Mutants that break presence history: bounds, limits, direction, pages, contents."""

from __future__ import annotations

from typing import Any

from presence_conformance.harness.adapter import HistoryPage
from presence_conformance.harness.adapters.reference import ReferencePage
from presence_conformance.harness.mutants.base import MutantAdapter, MutantPresence, mutant
from presence_conformance.reference_impl.types import Action, PresenceMessage


class _HistoryPresence(MutantPresence):
    """A presence object whose history() arguments pass through `arguments` first."""

    def arguments(
        self, start: int | None, end: int | None, limit: int | None, direction: str | None
    ) -> tuple[Any, Any, Any, Any]:
        return start, end, limit, direction

    async def history(
        self,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        direction: str | None = None,
    ) -> HistoryPage:
        return await super().history(*self.arguments(start, end, limit, direction))


@mutant("history-end-exclusive", "history.start-end-inclusive")
class HistoryEndExclusive(MutantAdapter):
    """history(end=...) excludes the events stamped exactly at `end` (`<` instead of `<=`)."""

    class Presence(_HistoryPresence):
        def arguments(self, start: Any, end: Any, limit: Any, direction: Any) -> tuple:
            if isinstance(end, int) and end > 0 and (start is None or end - 1 >= start):
                end -= 1
            return start, end, limit, direction


@mutant("history-start-exclusive", "history.start-end-inclusive")
class HistoryStartExclusive(MutantAdapter):
    """history(start=...) excludes the events stamped exactly at `start` (`>` instead of
    `>=`)."""

    class Presence(_HistoryPresence):
        def arguments(self, start: Any, end: Any, limit: Any, direction: Any) -> tuple:
            if isinstance(start, int) and (end is None or start + 1 <= end):
                start += 1
            return start, end, limit, direction


@mutant("history-limit-over-1000-accepted", "history.limit-max-1000")
class HistoryLimitOver1000Accepted(MutantAdapter):
    """A limit above 1000 is accepted (and capped at 1000) instead of refused."""

    class Presence(_HistoryPresence):
        def arguments(self, start: Any, end: Any, limit: Any, direction: Any) -> tuple:
            if isinstance(limit, int) and limit > 1000:
                limit = 1000
            return start, end, limit, direction


@mutant("history-limit-zero-accepted", "history.limit-positive")
class HistoryLimitZeroAccepted(MutantAdapter):
    """A limit below 1 is accepted and read as "no limit given" (a falsy check)."""

    class Presence(_HistoryPresence):
        def arguments(self, start: Any, end: Any, limit: Any, direction: Any) -> tuple:
            if isinstance(limit, int) and limit < 1:
                limit = None
            return start, end, limit, direction


@mutant("history-default-forwards", "history.direction-default-backwards")
class HistoryDefaultForwards(MutantAdapter):
    """Without a direction, history is returned oldest first (the default is forwards, not
    backwards; ably-chat-js #426)."""

    class Presence(_HistoryPresence):
        def arguments(self, start: Any, end: Any, limit: Any, direction: Any) -> tuple:
            return start, end, limit, direction or "forwards"


@mutant("history-direction-invalid-accepted", "history.direction-invalid")
class HistoryDirectionInvalidAccepted(MutantAdapter):
    """An unknown direction is accepted and read as backwards instead of refused."""

    class Presence(_HistoryPresence):
        def arguments(self, start: Any, end: Any, limit: Any, direction: Any) -> tuple:
            if direction not in (None, "forwards", "backwards"):
                direction = "backwards"
            return start, end, limit, direction


@mutant("history-start-after-end-accepted", "history.start-after-end")
class HistoryStartAfterEndAccepted(MutantAdapter):
    """history(start, end) with start after end swaps them instead of refusing the query."""

    class Presence(_HistoryPresence):
        def arguments(self, start: Any, end: Any, limit: Any, direction: Any) -> tuple:
            if isinstance(start, int) and isinstance(end, int) and start > end:
                start, end = end, start
            return start, end, limit, direction


@mutant("history-limit-default-10", "history.full-pages")
class HistoryLimitDefault10(MutantAdapter):
    """Without a limit, history pages hold 10 events instead of 100 (allowed, a limit is a
    maximum, RSP4b3; but not the full pages expected)."""

    class Presence(_HistoryPresence):
        def arguments(self, start: Any, end: Any, limit: Any, direction: Any) -> tuple:
            return start, end, 10 if limit is None else limit, direction


@mutant("history-limit-default-ignored", "history.limit-default-100")
class HistoryLimitDefaultIgnored(MutantAdapter):
    """Without a limit, every event comes on one page (the default of 100 is never applied)."""

    class Presence(_HistoryPresence):
        def arguments(self, start: Any, end: Any, limit: Any, direction: Any) -> tuple:
            return start, end, 1000 if limit is None else limit, direction


@mutant("history-missing-leaves", "history.returns-events")
class HistoryMissingLeaves(MutantAdapter):
    """History never holds leave events (only the member-changing actions are stored)."""

    def on_history(
        self, message: PresenceMessage, presence: MutantPresence
    ) -> list[PresenceMessage]:
        return [] if message.action is Action.LEAVE else [message]


@mutant("history-no-synthesized-leave", "history.includes-synthesized-leave")
class HistoryNoSynthesizedLeave(MutantAdapter):
    """History holds the leaves clients sent but not those synthesized by the server after an
    abrupt disconnect."""

    def on_history(
        self, message: PresenceMessage, presence: MutantPresence
    ) -> list[PresenceMessage]:
        synthesized = message.action is Action.LEAVE and not message.model_id.startswith(
            message.connection_id + ":"
        )
        return [] if synthesized else [message]


@mutant("history-duplicates", "history.returns-events")
class HistoryDuplicates(MutantAdapter):
    """Every enter is stored twice in history (the event is persisted by the publishing
    node and again by the channel's node)."""

    def on_history(
        self, message: PresenceMessage, presence: MutantPresence
    ) -> list[PresenceMessage]:
        return [message, message] if message.action is Action.ENTER else [message]


class _SkippingPage(ReferencePage):
    """A page whose next page starts one item too late (the cursor points past the first
    item of the next page)."""

    def __init__(self, page: Any, presence: Any, skip: bool = False) -> None:
        super().__init__(page, presence)
        if skip:
            self.items = self.items[1:]

    async def next(self) -> HistoryPage | None:
        await self._presence.delay()
        page = await self._page.next()
        return None if page is None else _SkippingPage(page, self._presence, skip=True)


@mutant("pagination-skips-item", "history.pagination")
class PaginationSkipsItem(MutantAdapter):
    """Following history pages skips one event at each page boundary (an off-by-one cursor)."""

    class Presence(MutantPresence):
        async def history(
            self,
            start: int | None = None,
            end: int | None = None,
            limit: int | None = None,
            direction: str | None = None,
        ) -> HistoryPage:
            await self.delay()
            page = await self.service_presence.history(start, end, limit, direction)
            return _SkippingPage(page, self)
