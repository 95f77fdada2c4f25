"""The client's side of the Ably wire form: errors, and PresenceMessage encoding (TP3, RSL4/RSL6).

Only the subset in `docs/protocol.md` is covered. The protocol's numbers (ProtocolMessage
actions, flags) come from the table shared with the reference server,
`presence_conformance.reference_impl.protocol`, and are re-exported here. Presence items are
converted between the wire form and `PresenceMessage`:

- outgoing data: a string is sent as is; a JSON object or array as a JSON string with
  `encoding: "json"`; binary as base64 with `encoding: "base64"` in JSON, as raw bytes (a
  MessagePack `bin`, no encoding) in MessagePack (RSL4d3, `binary=True`);
- incoming data is decoded by its `encoding`, a `/`-separated chain applied right to left
  (`json`, `base64`, `utf-8`); anything not understood stays encoded and the residual encoding
  is kept in `PresenceMessage.extra["encoding"]` (RSL6b): `decode_data`, the client-side
  oracle's (`reference_impl/client_presence.py`), re-exported here;
- `id`, `connectionId` and `timestamp` missing on an item are filled from the enclosing
  ProtocolMessage (TP3a, TP3d, TP3g).
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.client_presence import (
    MalformedFrame,
    decode_data,
    item_from_wire,
)
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.protocol import (
    HAS_PRESENCE,
    PRESENCE_SUBSCRIBE,
    RESUMED,
    Flag,
    ProtocolAction,
)
from presence_conformance.reference_impl.types import Action, PresenceMessage

__all__ = [
    "HAS_PRESENCE",
    "PRESENCE_SUBSCRIBE",
    "RESUMED",
    "Flag",
    "OperationTimeout",
    "ProtocolAction",
    "ProtocolViolation",
    "decode_data",
    "encode_data",
    "error_from_wire",
    "presence_from_wire",
    "presence_to_wire",
]


class OperationTimeout(TimeoutError):
    """An operation got no answer from the server within its bound."""


class ProtocolViolation(Exception):
    """The peer sent something the Ably protocol does not allow (a malformed frame or response).

    This is not a `PresenceError`: a refusal carries an Ably error code, a violation means the
    implementation under test is broken, and the harness reports it as such.
    """


def error_from_wire(
    error: Any, default_code: int = 50000, default_message: str = "error without details"
) -> PresenceError:
    """An ErrorInfo object from a frame or REST body (`{code, statusCode, message}`) as PresenceError."""
    if not isinstance(error, dict):
        return PresenceError(default_code, default_message)
    code = error.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        code = default_code
    status = error.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int):
        status = None
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = default_message
    return PresenceError(code, message, status_code=status)


def encode_data(data: Any, binary: bool = False) -> tuple[Any, str | None]:
    """Member data as the (`data`, `encoding`) pair sent on the wire (`binary`: in MessagePack,
    where binary data goes as it is).

    Values that are not presence data but are JSON values (numbers, booleans) are sent as they
    are, so that the server's own validation (40013) is what the harness observes. Values that
    cannot be put on the wire at all raise PresenceError 40013 here.
    """
    if data is None or isinstance(data, str):
        return data, None
    if isinstance(data, bytes | bytearray | memoryview):
        if binary:
            return bytes(data), None
        return base64.b64encode(bytes(data)).decode("ascii"), "base64"
    if isinstance(data, dict | list):
        try:
            return json.dumps(data, allow_nan=False, separators=(",", ":")), "json"
        except (TypeError, ValueError) as exc:
            raise PresenceError(
                errors.INVALID_DATA, f"data: not JSON-encodable ({exc})", "data"
            ) from None
    if isinstance(data, bool | int) or (isinstance(data, float) and math.isfinite(data)):
        return data, None
    raise PresenceError(
        errors.INVALID_DATA,
        f"data: unsupported data type {type(data).__name__}; "
        "expected string, JSON object or array, or binary",
        "data",
    )


def presence_to_wire(
    action: Action,
    data: Any,
    client_id: str | None = None,
    id_: str | None = None,
    binary: bool = False,
) -> dict:
    """A presence item for a client PRESENCE frame. Without `client_id` none is sent (RTP8c).
    `binary`: the item goes in a MessagePack frame."""
    wire_data, encoding = encode_data(data, binary)
    item: dict[str, Any] = {"action": action.wire}
    if id_ is not None:
        item["id"] = id_
    if client_id is not None:
        item["clientId"] = client_id
    if wire_data is not None:
        item["data"] = wire_data
    if encoding is not None:
        item["encoding"] = encoding
    return item


def presence_from_wire(item: Any, parent: dict | None = None, index: int = 0) -> PresenceMessage:
    """A received presence item as a `PresenceMessage`, defaults taken from `parent` (TP3a/d/g),
    its data decoded (`decode_data`): the oracle's `item_from_wire`.

    A missing `id` stays None when the parent has no id either; a missing clientId becomes "".
    Raises ProtocolViolation for an item that is not an object or has an unknown action.
    """
    try:
        return item_from_wire(item, parent, index, decode_data)
    except MalformedFrame as exc:
        raise ProtocolViolation(str(exc)) from None
