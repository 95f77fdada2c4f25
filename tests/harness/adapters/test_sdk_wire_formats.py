"""The official SDK adapters in both wire formats (`--adapter-option protocol=msgpack|json`).

For ably-python and ably-js, in each format: the client really connects with that format (the
reference server's record of the connection), its PRESENCE frames carry binary data the way the
format says (RSL4c1: a MessagePack `bin` without encoding; RSL4d: base64 with encoding `base64`
in JSON), a subscriber receives the binary and JSON data back decoded, and REST presence history
(in the SDK's format too) returns them. The default is msgpack, the SDKs' own default
(`useBinaryProtocol` true); a protocol other than json or msgpack is a usage error.

ably-js is skipped without node or its node_modules (failed instead in CI, as in
test_ably_js_adapter.py); ably-python without the ably package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any

import pytest
from presence_conformance.harness.adapter import Adapter, UsageError
from presence_conformance.harness.adapters.ably_js import AblyJsAdapter, default_node_dir
from presence_conformance.reference_impl.types import PresenceMessage
from support import run_adapter, until

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_reason(sdk: str) -> str | None:
    if sdk == "ably-python":
        return None if importlib.util.find_spec("ably") else "ably-python is not installed"
    if shutil.which("node") is None:
        return "node is not installed"
    if not (default_node_dir() / "node_modules" / "ably" / "package.json").is_file():
        return "the node folder has no node_modules: run npm ci there"
    return None


def make(sdk: str, **options: str) -> Adapter:
    reason = _skip_reason(sdk)
    if reason is not None:
        if IN_CI:
            pytest.fail(f"{sdk}: {reason} (CI installs it)")
        pytest.skip(reason)
    if sdk == "ably-python":
        from presence_conformance.harness.adapters.ably_python import AblyPythonAdapter

        return AblyPythonAdapter(options)
    return AblyJsAdapter(options)


@pytest.mark.parametrize("protocol", ["msgpack", "json", None])
@pytest.mark.parametrize("sdk", ["ably-python", "ably-js"])
def test_sdk_speaks_the_chosen_format(sdk: str, protocol: str | None) -> None:
    adapter = make(sdk, **({"protocol": protocol} if protocol else {}))
    expected = protocol or "msgpack"  # the SDKs' default: useBinaryProtocol true

    async def body(adapter: Any) -> Any:
        alice = await adapter.connect("alice")
        bob = await adapter.connect("bob")
        seen: list[PresenceMessage] = []
        await bob.channel("room").presence.subscribe(seen.append)
        await alice.channel("room").presence.enter(b"\x00\xff")
        await alice.channel("room").presence.update({"a": [1]})
        await until(lambda: len(seen) == 2, timeout=10)
        server = adapter.embedded.server
        formats = {server.realtime.connections[c.id].format for c in (alice, bob)}
        items = [f["presence"][0] for f in server.frames(alice.id) if f.get("action") == 14]
        page = await alice.channel("room").presence.history(direction="forwards")
        return formats, [(m.action.value, m.data) for m in seen], items, page

    formats, seen, items, page = run_adapter(adapter, body, 40)
    assert formats == {expected}
    assert seen == [("enter", b"\x00\xff"), ("update", {"a": [1]})]
    enter, update = ({k: v for k, v in item.items() if k in ("data", "encoding")} for item in items)
    if expected == "msgpack":
        assert enter == {"data": b"\x00\xff"}  # RSL4c1: bin, no encoding
    else:
        assert enter == {"data": "AP8=", "encoding": "base64"}  # RSL4d1
    assert update["encoding"] == "json" and isinstance(update["data"], str)
    assert [m.data for m in page.items] == [b"\x00\xff", {"a": [1]}]


@pytest.mark.parametrize("sdk", ["ably-python", "ably-js"])
def test_a_protocol_other_than_json_or_msgpack_is_a_usage_error(sdk: str) -> None:
    with pytest.raises(UsageError, match="protocol='cbor'"):
        make(sdk, protocol="cbor")
