"""Presence data types: actions, `PresenceMessage`, member data and its JSON form.

`PresenceMessage` is the API form of the seed (`action` as a name). Member data may be a string,
a JSON object or array, binary (`bytes`), or absent (`None`) (seed: enter `data`; TP3e).
Numbers and booleans at top level are not presence data (Ably error 40013).

In JSON documents (scenario expectations, reports, the bridge) binary data is written as
`{"$binary": "<base64>"}`, the convention `data_to_json` / `data_from_json` implement.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass, field
from typing import Any

from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.protocol import PresenceAction

Data = str | bytes | dict | list | None


class Action(enum.StrEnum):
    """Presence actions in TP2 order (ABSENT is client-local, never emitted)."""

    ABSENT = "absent"
    PRESENT = "present"
    ENTER = "enter"
    LEAVE = "leave"
    UPDATE = "update"

    @property
    def wire(self) -> int:
        """The action's number on the Ably wire (TP2)."""
        return _WIRE[self]

    @classmethod
    def from_wire(cls, number: object) -> Action:
        """The action numbered `number` on the wire (any decoded JSON value); 40000 otherwise."""
        try:
            return _FROM_WIRE[number]
        except (KeyError, TypeError):
            raise PresenceError(
                errors.BAD_REQUEST, f"action: unknown presence action number {number!r}", "action"
            ) from None

    @classmethod
    def parse(cls, value: Any, argument: str = "action") -> Action:
        """Parse a subscriber-visible action name; raise 40003 naming `argument` otherwise."""
        if isinstance(value, Action):
            action = value
        elif isinstance(value, str) and value in _BY_NAME:
            action = _BY_NAME[value]
        else:
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE,
                f"{argument}: unknown presence action {value!r}; expected one of enter, leave, update, present",
                argument,
            )
        if action is Action.ABSENT:
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE,
                f"{argument}: 'absent' is never emitted to subscribers",
                argument,
            )
        return action


_WIRE = {action: int(PresenceAction[action.name]) for action in Action}  # numbers: protocol.py
_FROM_WIRE: dict[object, Action] = {v: k for k, v in _WIRE.items()}
_BY_NAME = {a.value: a for a in Action}

SUBSCRIBABLE = frozenset({Action.ENTER, Action.LEAVE, Action.UPDATE, Action.PRESENT})


def parse_actions(value: Any, argument: str = "action") -> frozenset[Action] | None:
    """`None` (all actions), one action name, or a list of them (seed: subscribe `action`)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        if not value:
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE, f"{argument}: empty list of actions", argument
            )
        return frozenset(Action.parse(v, argument) for v in value)
    return frozenset({Action.parse(value, argument)})


def validate_data(data: Any, argument: str = "data") -> Data:
    """Return `data` if it is presence data (TP3e), else raise 40013 naming the argument."""
    if data is None or isinstance(data, (str, bytes)):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if isinstance(data, (dict, list)):
        try:
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise PresenceError(
                errors.INVALID_DATA, f"{argument}: not JSON-encodable ({exc})", argument
            ) from None
        return data
    raise PresenceError(
        errors.INVALID_DATA,
        f"{argument}: unsupported data type {type(data).__name__}; "
        "expected string, JSON object or array, or binary",
        argument,
    )


def data_to_json(data: Data) -> Any:
    """Member data as a JSON value; binary becomes `{"$binary": base64}`."""
    if isinstance(data, (bytes, bytearray)):
        return {"$binary": base64.b64encode(bytes(data)).decode("ascii")}
    return data


def data_from_json(value: Any) -> Data:
    """Inverse of `data_to_json`."""
    if isinstance(value, dict) and set(value) == {"$binary"} and isinstance(value["$binary"], str):
        return base64.b64decode(value["$binary"])
    return value


def data_equal(a: Any, b: Any) -> bool:
    """Equality of member data that does not confuse `bytes` with `bytearray` or str with bytes."""
    if isinstance(a, (bytes, bytearray, memoryview)) or isinstance(
        b, (bytes, bytearray, memoryview)
    ):
        return (
            isinstance(a, (bytes, bytearray, memoryview))
            and isinstance(b, (bytes, bytearray, memoryview))
            and bytes(a) == bytes(b)
        )
    if type(a) is not type(b) and not (isinstance(a, dict) and isinstance(b, dict)):
        return False
    return _json_equal(a, b)


def _json_equal(a: Any, b: Any) -> bool:
    """`a == b`, except that an int and a float inside the data are equal when they are the same
    IEEE double: a JSON number has no int/float distinction, and a JavaScript client writes an
    integral double beyond 2**53 such as -4.356800382746733e+16 as -43568003827467330, which reads
    back as an int that Python's exact `==` tells apart from the float."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and _is_int(b):
        return _same_double(b, a)
    if isinstance(b, float) and _is_int(a):
        return _same_double(a, b)
    return bool(a == b)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _same_double(i: int, f: float) -> bool:
    try:
        return float(i) == f
    except OverflowError:
        return False


def member_key(connection_id: str, client_id: str) -> str:
    """TP3h: the member key `connectionId:clientId`."""
    return f"{connection_id}:{client_id}"


@dataclass(frozen=True, slots=True)
class PresenceMessage:
    """One presence event or member, in the seed's API form."""

    action: Action
    client_id: str
    connection_id: str
    data: Data = None
    timestamp: int = 0
    id: str | None = ""  # None only on a leave a client synthesizes itself (RTP19)
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def member_key(self) -> str:
        return member_key(self.connection_id, self.client_id)

    @property
    def model_id(self) -> str:
        """The id of an event the reference model made, which always has one (only a leave a
        client synthesizes itself has none, RTP19); raises ValueError on such a leave."""
        if self.id is None:
            raise ValueError(f"{self!r} has no id: only the reference model's events always do")
        return self.id

    def with_action(self, action: Action) -> PresenceMessage:
        # the constructor, not dataclasses.replace (several times slower): this is on the path
        # of every presence event, in the server's model and in every client map
        return PresenceMessage(
            action,
            self.client_id,
            self.connection_id,
            self.data,
            self.timestamp,
            self.id,
            self.extra,
        )

    def to_json(self) -> dict:
        """The API form as a JSON object (`spec/schemas/presence-message.json`)."""
        return {
            "action": self.action.value,
            "clientId": self.client_id,
            "connectionId": self.connection_id,
            "data": data_to_json(self.data),
            "timestamp": self.timestamp,
            "id": self.id,
        }

    @classmethod
    def from_json(cls, obj: dict) -> PresenceMessage:
        return cls(
            action=Action(obj["action"]),
            client_id=obj["clientId"],
            connection_id=obj["connectionId"],
            data=data_from_json(obj.get("data")),
            timestamp=obj.get("timestamp", 0),
            id=obj.get("id", ""),
        )
