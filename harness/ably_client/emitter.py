"""Presence subscriptions: a plain registration list (RTP6, RTP7).

Each `subscribe` appends one registration per action (or one for all actions); subscribing twice
registers twice, so the listener is called twice. `unsubscribe` forms (RTP7):

- `unsubscribe()` removes every registration (RTP7c);
- `unsubscribe(listener)` removes every registration of that listener (RTP7a);
- `unsubscribe(listener, actions)` removes that listener's registrations for those actions and,
  reading RTP7b as "the listener no longer receives those actions", also removes the actions
  from an all-actions registration of the listener;
- `unsubscribe(None, actions)` does the same for every listener.

Listeners are called synchronously by `emit`, with exceptions logged and swallowed; a listener
that returns an awaitable has it scheduled as a task.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.types import Action, PresenceMessage, parse_actions

__all__ = ["PresenceEmitter"]

log = logging.getLogger(__name__)

Listener = Callable[[PresenceMessage], Any]


@dataclass(slots=True)
class _Registration:
    listener: Listener
    action: Action | None  # None: all actions
    excluded: set[Action] = field(default_factory=set)  # actions removed from an all-actions one

    def matches(self, action: Action) -> bool:
        if self.action is None:
            return action not in self.excluded
        return self.action is action


class PresenceEmitter:
    """Listener registrations of one channel's presence object."""

    def __init__(self) -> None:
        self._registrations: list[_Registration] = []
        self._tasks: set[asyncio.Task] = set()

    def __len__(self) -> int:
        return len(self._registrations)

    def subscribe(self, listener: Listener, actions: Any = None) -> None:
        """Register `listener` for all actions (None), one action name, or a list of names.

        Raises PresenceError 40003 for an unknown action name or a listener that is not
        callable (nothing is registered then)."""
        if not callable(listener):
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE,
                f"listener: expected a callable, got {listener!r}",
                "listener",
            )
        parsed = parse_actions(actions, "actions")
        if parsed is None:
            self._registrations.append(_Registration(listener, None))
            return
        for action in sorted(parsed):
            self._registrations.append(_Registration(listener, action))
            for reg in self._registrations:  # a fresh subscription undoes an earlier exclusion
                if reg.listener == listener and reg.action is None:
                    reg.excluded.discard(action)

    def unsubscribe(self, listener: Listener | None = None, actions: Any = None) -> None:
        """The four RTP7 forms (see the module docstring)."""
        if listener is not None and not callable(listener):
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE,
                f"listener: expected a callable, got {listener!r}",
                "listener",
            )
        parsed = parse_actions(actions, "actions")
        if parsed is None:
            if listener is None:
                self._registrations.clear()
            else:
                self._registrations = [r for r in self._registrations if r.listener != listener]
            return
        kept: list[_Registration] = []
        for reg in self._registrations:
            if listener is not None and reg.listener != listener:
                kept.append(reg)
            elif reg.action is None:
                reg.excluded |= parsed
                kept.append(reg)
            elif reg.action not in parsed:
                kept.append(reg)
        self._registrations = kept

    def emit(self, message: PresenceMessage) -> None:
        """Call every listener registered for `message.action`."""
        for reg in list(self._registrations):
            if not reg.matches(message.action):
                continue
            try:
                result = reg.listener(message)
            except Exception:
                log.exception("presence listener %r raised", reg.listener)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def emit_all(self, messages: Iterable[PresenceMessage]) -> None:
        for message in messages:
            self.emit(message)
