"""The Ably realtime wire protocol subset the reference server speaks (its two encodings, JSON
and MessagePack, are in `codec.py`).

The `FrameError` every refused frame turns into, the error codes the server uses beyond
`presence_conformance.reference_impl.errors`, the decoding of a client's presence `data` +
`encoding` (TP3e, TP3f, RSL4) for the model, and the wire form of a `PresenceMessage` (TP3,
numeric actions) for SYNC, PRESENCE broadcasts and REST answers. The protocol's numbers
(actions, flags) are in `presence_conformance.reference_impl.protocol`.

Member data keeps the exact `data`, `encoding` and `extras` a client sent: they ride along the
model's `PresenceMessage.extra["wire"]` and are echoed back unchanged, so a JSON object sent as
a JSON string with encoding `json`, or binary as base64 with encoding `base64`, comes back
exactly as it went out, over realtime and REST alike.
"""

from __future__ import annotations

import base64
import binascii
import json
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.types import Action, Data, PresenceMessage, validate_data

# Ably error codes the server uses beyond presence_conformance.reference_impl.errors
INVALID_CHANNEL_NAME = 40010
INVALID_CREDENTIALS = 40101
INTERNAL_ERROR = 50000
UNABLE_TO_RECOVER = 80008

CLIENT_PRESENCE_ACTIONS = {
    Action.ENTER.wire: Action.ENTER,
    Action.LEAVE.wire: Action.LEAVE,
    Action.UPDATE.wire: Action.UPDATE,
}


class FrameError(Exception):
    """A refused frame. Sent as NACK when `msg_serial` is known, else as ERROR (channel-scoped
    when `channel` is set)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        channel: str | None = None,
        msg_serial: int | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.channel = channel
        self.msg_serial = msg_serial
        self.status_code = status_code if status_code is not None else _status(code)

    @classmethod
    def from_presence_error(
        cls, exc: PresenceError, *, channel: str | None = None, msg_serial: int | None = None
    ) -> FrameError:
        return cls(
            exc.code,
            exc.message,
            channel=channel,
            msg_serial=msg_serial,
            status_code=exc.status_code,
        )

    def error_info(self) -> dict:
        """Ably ErrorInfo (TI1)."""
        return {"code": self.code, "statusCode": self.status_code, "message": self.message}


def _status(code: int) -> int:
    status = code // 100
    return status if 400 <= status <= 599 else 400


def error_info(code: int, message: str, status_code: int | None = None) -> dict:
    """An Ably ErrorInfo object."""
    return {"code": code, "statusCode": status_code or _status(code), "message": message}


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist = 2, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 40, 40, 40
MAX_NESTING = 128  # levels of objects/arrays in presence data or extras


def short(value: Any, limit: int = 60) -> str:
    """A bounded `repr` of a value: error messages never echo huge or deeply nested input."""
    try:
        text = _REPR.repr(value)
    except Exception:  # pragma: no cover - reprlib is bounded
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """True if `value` nests objects/arrays more than `limit` levels (checked without recursion,
    so that nothing later, encoding or copying it, can hit the recursion limit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dumps(obj: Any) -> str:
    """ASCII-safe JSON (lone surrogates from clients cannot break it): REST error bodies. Frames
    are encoded by `codec.encode`."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, slots=True)
class WireData:
    """`data`, `encoding` and `extras` of a presence message exactly as the client sent them."""

    data: Any = None
    encoding: str | None = None
    extras: dict | None = None


def decode_data(data: Any, encoding: Any, where: str) -> Data:
    """The member data the model stores for wire `data` + `encoding` (RSL4 decoding).

    Steps are undone right to left: `base64` -> bytes, `utf-8` -> str, `json` -> object or
    array. An unknown step (e.g. `cipher+aes-128-cbc`) stops the decoding: what was decoded so
    far is stored, and the original form is echoed back anyway. Raises `FrameError` 40013.
    """
    if encoding is not None and not isinstance(encoding, str):
        raise FrameError(
            errors.INVALID_DATA, f"{where}.encoding: expected a string, got {json_type(encoding)}"
        )
    if too_deep(data):
        raise FrameError(
            errors.INVALID_DATA, f"{where}.data: nested deeper than {MAX_NESTING} levels"
        )
    value: Any = data
    if encoding:
        for step in reversed(encoding.split("/")):
            if step == "base64":
                if not isinstance(value, str):
                    raise FrameError(
                        errors.INVALID_DATA,
                        f"{where}.data: encoding 'base64' needs a string, got {json_type(value)}",
                    )
                try:
                    value = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    raise FrameError(
                        errors.INVALID_DATA,
                        f"{where}.data: not valid base64 (encoding {encoding!r})",
                    ) from None
            elif step == "utf-8":
                if isinstance(value, bytes):
                    try:
                        value = value.decode("utf-8")
                    except UnicodeDecodeError:
                        raise FrameError(
                            errors.INVALID_DATA,
                            f"{where}.data: not valid UTF-8 (encoding {encoding!r})",
                        ) from None
                elif not isinstance(value, str):
                    raise FrameError(
                        errors.INVALID_DATA,
                        f"{where}.data: encoding 'utf-8' needs "
                        f"a string or binary, got {json_type(value)}",
                    )
            elif step == "json":
                if isinstance(value, bytes):
                    try:
                        value = value.decode("utf-8")
                    except UnicodeDecodeError:
                        raise FrameError(
                            errors.INVALID_DATA, f"{where}.data: not valid UTF-8 JSON"
                        ) from None
                if not isinstance(value, str):
                    raise FrameError(
                        errors.INVALID_DATA,
                        f"{where}.data: encoding 'json' needs a "
                        f"JSON string, got {json_type(value)}",
                    )
                try:
                    value = json.loads(value)
                except (ValueError, RecursionError):
                    raise FrameError(
                        errors.INVALID_DATA,
                        f"{where}.data: encoding 'json' but data is not valid JSON",
                    ) from None
                if not isinstance(value, (dict, list)):
                    raise FrameError(
                        errors.INVALID_DATA,
                        f"{where}.data: encoding 'json' must "
                        f"hold an object or array, got {json_type(value)}",
                    )
                if too_deep(value):
                    raise FrameError(
                        errors.INVALID_DATA,
                        f"{where}.data: nested deeper than {MAX_NESTING} levels",
                    )
            else:
                break
    try:
        return validate_data(value, f"{where}.data")
    except PresenceError as exc:
        raise FrameError.from_presence_error(exc) from None
    except RecursionError:
        raise FrameError(errors.INVALID_DATA, f"{where}.data: nested too deeply") from None


def encode_data(data: Data) -> tuple[Any, str | None]:
    """The wire form of model data when no client form is known (synthesized messages)."""
    if data is None or isinstance(data, str):
        return data, None
    if isinstance(data, (bytes, bytearray)):
        return base64.b64encode(bytes(data)).decode("ascii"), "base64"
    return json.dumps(data, separators=(",", ":")), "json"


def wire_presence(msg: PresenceMessage) -> dict:
    """A `PresenceMessage` on the wire (TP3): numeric action, explicit id, clientId,
    connectionId and timestamp; data, encoding and extras as the client sent them."""
    item: dict[str, Any] = {
        "id": msg.id,
        "action": msg.action.wire,
        "clientId": msg.client_id,
        "connectionId": msg.connection_id,
        "timestamp": msg.timestamp,
    }
    wire = msg.extra.get("wire")
    if isinstance(wire, WireData):
        data, encoding, extras = wire.data, wire.encoding, wire.extras
    else:
        (data, encoding), extras = encode_data(msg.data), None
    if data is not None:
        item["data"] = data
    if encoding:
        item["encoding"] = encoding
    if extras is not None:
        item["extras"] = extras
    return item
