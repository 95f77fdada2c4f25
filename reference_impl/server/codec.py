"""The two wire formats of the reference server: JSON (text frames) and MessagePack (binary
frames), chosen per connection by the `format` query parameter of the upgrade, as the Ably SDKs
choose it (RTN2a: `format=msgpack` when `useBinaryProtocol` is set, `json` otherwise); REST
answers in MessagePack when the request's `Accept` asks for `application/x-msgpack`.

- `encode(frame, fmt)` -> bytes: the frame in that format. JSON goes through `orjson` (with the
  standard library as the fallback for what orjson refuses: lone surrogates a JSON client sent,
  integers beyond 64 bits, non-string keys), MessagePack through `msgpack` (`use_bin_type`).
- `decode_json(text)` / `decode_msgpack(data)` -> the decoded value, or `DecodeError` with a
  reason. JSON decoding gives exactly what `json.loads` gives (orjson first; the standard library
  for anything orjson refuses or would read differently: integers beyond 64 bits, which orjson
  reads as floats).
- Binary member data: a JSON connection carries it as base64 with `base64` as the last step of
  `encoding` (RSL4d3); a MessagePack connection as a MessagePack `bin`, without that step. The
  server keeps each member's data as its client sent it and converts only at the edge, when the
  recipient speaks the other format (`presence` items of a frame, REST bodies): raw bytes become
  base64 + `/base64` for JSON, base64 with a trailing `base64` step becomes raw bytes for
  MessagePack. A frame is never changed in place: it is encoded once per format.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, Literal

import msgpack
import orjson

__all__ = [
    "FORMATS",
    "MSGPACK_MIME",
    "DecodeError",
    "WireFormat",
    "decode_json",
    "decode_msgpack",
    "encode",
    "encode_json",
    "encode_msgpack",
    "items_for",
]

WireFormat = Literal["json", "msgpack"]
FORMATS: tuple[WireFormat, ...] = ("json", "msgpack")
MSGPACK_MIME = "application/x-msgpack"

# orjson reads integers beyond 64 bits as floats; the standard library keeps them exact. A float
# of at least this magnitude may have been such an integer: the standard library reads it again.
_HUGE = float(2**63)


class DecodeError(ValueError):
    """A frame that is not valid in its format; `reason` says why (for the ERROR message)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- decoding ---------------------------------------------------------------------------------------


def decode_json(text: str) -> Any:
    """A JSON text frame, decoded exactly as `json.loads` decodes it; DecodeError otherwise."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        pass  # the standard library decides (and names the problem)
    else:
        if not _has_huge_float(value):
            return value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    except (ValueError, RecursionError):
        raise DecodeError("not valid JSON (nested too deeply)") from None


def decode_msgpack(data: bytes) -> Any:
    """A MessagePack binary frame (strings must be UTF-8, map keys strings or binary);
    DecodeError otherwise."""
    try:
        return msgpack.unpackb(data, raw=False, ext_hook=_no_ext)
    except _ExtUsed as exc:
        raise DecodeError(f"not valid MessagePack for Ably (extension type {exc.code})") from None
    except msgpack.ExtraData:
        raise DecodeError("not valid MessagePack (extra bytes after the first object)") from None
    except UnicodeDecodeError:
        raise DecodeError("not valid MessagePack (a string is not valid UTF-8)") from None
    except msgpack.StackError:
        raise DecodeError("not valid MessagePack (nested too deeply)") from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise DecodeError(f"not valid MessagePack ({str(exc) or type(exc).__name__})") from None


class _ExtUsed(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _no_ext(code: int, data: bytes) -> Any:
    """The Ably protocol uses no MessagePack extension type."""
    raise _ExtUsed(code)


def _has_huge_float(value: Any) -> bool:
    """Whether a decoded value holds a float of magnitude 2**63 or more (without recursion)."""
    if type(value) is not dict:  # frames are objects; anything else: look at all of it
        return _huge_in([value])
    for item in value.values():  # the top level here, the containers in `_huge_in`
        kind = type(item)
        if kind is float:
            if not -_HUGE < item < _HUGE:
                return True
        elif (kind is dict or kind is list) and _huge_in([item]):
            return True
    return False


def _huge_in(stack: list[Any]) -> bool:
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float and not -_HUGE < item < _HUGE:
            return True
    return False


# -- encoding ---------------------------------------------------------------------------------------


def encode_json(frame: Any) -> bytes:
    """`frame` as JSON text (UTF-8), binary presence data as base64."""
    if isinstance(frame, dict):  # (frames without binary presence data: no call on their path)
        items = frame.get("presence")
        if isinstance(items, list):
            for item in items:  # the test of `_items_to_json`, inlined
                if type(item) is dict and type(item.get("data")) in _BINARY_TYPES:
                    frame = _for_format(frame, _items_to_json)
                    break
    try:
        return orjson.dumps(frame)
    except (orjson.JSONEncodeError, TypeError):
        # lone surrogates, integers beyond 64 bits, non-string keys: ASCII-safe JSON instead
        return json.dumps(frame, separators=(",", ":"), allow_nan=False).encode("ascii")


def encode_msgpack(frame: Any) -> bytes:
    """`frame` as MessagePack, binary presence data as `bin`."""
    frame = _for_format(frame, _items_to_msgpack)
    try:
        return msgpack.packb(frame, use_bin_type=True)
    except (OverflowError, UnicodeEncodeError, TypeError, ValueError):
        # data a JSON client sent that MessagePack cannot carry as is
        return msgpack.packb(_msgpack_safe(frame), use_bin_type=True, unicode_errors="replace")


ENCODERS: dict[str, Callable[[Any], bytes]] = {"json": encode_json, "msgpack": encode_msgpack}


def encode(frame: Any, fmt: str) -> bytes:
    """`frame` in format `fmt` ("json" or "msgpack")."""
    return ENCODERS[fmt](frame)


def items_for(items: list[Any], fmt: str) -> list[Any]:
    """Presence items (a REST body) with their binary data in `fmt`'s form."""
    converted = (_items_to_json if fmt == "json" else _items_to_msgpack)(items)
    return items if converted is None else converted


def _for_format(frame: Any, convert: Callable[[list[Any]], list[Any] | None]) -> Any:
    if isinstance(frame, dict):
        items = frame.get("presence")
        if isinstance(items, list):
            converted = convert(items)
            if converted is not None:
                return {**frame, "presence": converted}
    return frame


def _items_to_json(items: list[Any]) -> list[Any] | None:
    """Items with raw bytes as base64 + a `base64` step; None when nothing needs it."""
    for item in items:
        if type(item) is dict and type(item.get("data")) in _BINARY_TYPES:
            break
    else:
        return None  # the common case: nothing to convert
    out = []
    for item in items:
        if isinstance(item, dict) and _is_bytes(item.get("data")):
            encoding = item.get("encoding")
            item = {
                **item,
                "data": base64.b64encode(bytes(item["data"])).decode("ascii"),
                "encoding": f"{encoding}/base64" if encoding else "base64",
            }
        out.append(item)
    return out


def _items_to_msgpack(items: list[Any]) -> list[Any] | None:
    """Items with base64 data (a trailing `base64` step) as raw bytes; None when none has it."""
    for item in items:
        if _base64_item(item):
            break
    else:
        return None
    out = []
    for item in items:
        if _base64_item(item):
            try:
                raw = base64.b64decode(item["data"], validate=True)
            except (binascii.Error, ValueError):
                out.append(item)
                continue
            steps = item["encoding"].split("/")[:-1]
            item = {**item, "data": raw}
            if steps:
                item["encoding"] = "/".join(steps)
            else:
                item.pop("encoding", None)
        out.append(item)
    return out


def _base64_item(item: Any) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("data"), str):
        return False
    encoding = item.get("encoding")
    return isinstance(encoding, str) and (encoding == "base64" or encoding.endswith("/base64"))


def _is_bytes(value: Any) -> bool:
    return isinstance(value, _BINARY)


_BINARY = (bytes, bytearray, memoryview)
_BINARY_TYPES = frozenset(_BINARY)


def _msgpack_safe(value: Any) -> Any:
    """A copy MessagePack can carry: integers beyond 64 bits as floats (as a JavaScript client
    reads them from JSON anyway; as strings beyond the float range). Strings that are not valid
    UTF-8 (lone surrogates) are replaced by the encoder."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        try:
            return float(value)
        except OverflowError:
            return str(value)
    if isinstance(value, dict):
        return {k: _msgpack_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_msgpack_safe(v) for v in value]
    return value
