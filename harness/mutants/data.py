"""Mutants that break member data and the fields of presence messages."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from presence_conformance.harness.mutants.base import MutantAdapter, MutantPresence, mutant
from presence_conformance.reference_impl.types import Action, PresenceMessage


def _with_data(message: PresenceMessage, data: Any) -> list[PresenceMessage]:
    return [dataclasses.replace(message, data=data)]


@mutant("binary-as-text", "data.binary")
class BinaryAsText(MutantAdapter):
    """Binary data returned as text: bytes come back as their base64 string (the encoding is
    applied on the way out but never undone on the way in)."""

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        if isinstance(message.data, bytes):
            return _with_data(message, base64.b64encode(message.data).decode("ascii"))
        return [message]


@mutant("json-object-as-string", "data.json-object")
class JsonObjectAsString(MutantAdapter):
    """JSON object data is returned as its JSON text (encoding `json` never decoded)."""

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        if isinstance(message.data, dict):
            return _with_data(message, json.dumps(message.data, separators=(",", ":")))
        return [message]


@mutant("unicode-mangled", "data.unicode")
class UnicodeMangled(MutantAdapter):
    """String data with non-ASCII characters comes back as mojibake (UTF-8 bytes decoded as
    Latin-1)."""

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        data = message.data
        if isinstance(data, str) and not data.isascii():
            return _with_data(message, data.encode("utf-8").decode("latin-1"))
        return [message]


@mutant("empty-string-as-null", "data.string")
class EmptyStringAsNull(MutantAdapter):
    """An empty string as data comes back as null (a falsy check, `data or None`)."""

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        if message.data == "":
            return _with_data(message, None)
        return [message]


@mutant("numeric-data-accepted", "data.unsupported-type")
class NumericDataAccepted(MutantAdapter):
    """A bare number or boolean as data is accepted and silently turned into a string instead
    of being refused (40013)."""

    class Presence(MutantPresence):
        @staticmethod
        def _coerce(data: Any) -> Any:
            return json.dumps(data) if isinstance(data, bool | int | float) else data

        async def enter(self, data: Any = None) -> None:
            await super().enter(self._coerce(data))

        async def update(self, data: Any = None) -> None:
            await super().update(self._coerce(data))

        async def leave(self, data: Any = None) -> None:
            await super().leave(self._coerce(data))


@mutant("timestamps-in-seconds", "message.timestamp")
class TimestampsInSeconds(MutantAdapter):
    """Timestamps in seconds, not milliseconds: every message carries `time.time()`-style
    fractional seconds since the epoch."""

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        return [dataclasses.replace(message, timestamp=message.timestamp / 1000)]  # type: ignore[arg-type]


@mutant("ids-not-unique", "message.id")
class IdsNotUnique(MutantAdapter):
    """Event ids are not unique: the msgSerial part never increments, so every event of a
    connection has the id `connectionId:0:0`."""

    def mangle(self, message: PresenceMessage, presence: MutantPresence) -> list[PresenceMessage]:
        if message.action is not Action.PRESENT and message.model_id.startswith(
            message.connection_id + ":"
        ):
            return [dataclasses.replace(message, id=f"{message.connection_id}:0:0")]
        return [message]


@mutant("leave-data-ignored", "leave.data-given")
class LeaveDataIgnored(MutantAdapter):
    """leave(data) ignores the data given: the leave event carries the member's last data."""

    class Presence(MutantPresence):
        async def leave(self, data: Any = None) -> None:
            await super().leave(None)


@mutant("update-null-data-keeps-old", "update.null-data")
class UpdateNullDataKeepsOld(MutantAdapter):
    """update() without data (or with null) keeps the member's previous data instead of
    clearing it (null read as "no change")."""

    class Presence(MutantPresence):
        async def update(self, data: Any = None) -> None:
            if data is None:
                conn = self.service_connection
                current = (
                    self.model.get(self.channel_name, conn.client_id, conn.id)
                    if conn.client_id
                    else []
                )
                if current:
                    data = current[0].data
            await super().update(data)
