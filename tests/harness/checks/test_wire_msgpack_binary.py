"""`wire.msgpack-binary-data`: binary data is a MessagePack bin on a MessagePack connection.

RSL4c1 ("a binary Message payload is encoded as MessagePack binary type"), which presence data
follows (RTP8e: "encoded and decoded as with normal messages"): a client speaking MessagePack
must not send the JSON form (a base64 string with a trailing `base64` in `encoding`, RSL4d1).

- hand-made logs: the base64 form on a MessagePack connection is found (presence and message
  items, `base64` alone or at the end of a chain); a bin, other encodings, and JSON connections
  are not;
- `collect_wire_frames` records the format the adapter's connections spoke;
- end to end: `ably-wire` with `protocol=msgpack` passes on `data/binary`, and the same client
  made to send base64 (a broken client) fails it under this requirement; in JSON the base64 form
  is right and passes;
- ably-python 3.1.4, unmodified, in MessagePack (its default): its real frames pass.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from presence_conformance.harness.ably_client import connection as client_connection
from presence_conformance.harness.adapters.ably_wire import AblyWireAdapter
from presence_conformance.harness.adapters.reference import ReferenceAdapter
from presence_conformance.harness.checks.wire import (
    ConnectionFrames,
    analyse,
    collect_wire_frames,
    msgpack_binary_findings,
)
from presence_conformance.harness.results import Outcome
from presence_conformance.harness.run.driver import CaseDriver
from presence_conformance.harness.run.runner import RunSettings, run_scenario
from presence_conformance.harness.scenario import scenario_from_dict
from presence_conformance.reference_impl.server import PresenceServer, ServerConfig
from support import packaged

REQUIREMENT = "wire.msgpack-binary-data"


def log(*frames: Any, wire_format: str = "msgpack") -> ConnectionFrames:
    return ConnectionFrames("conn1", "alice", list(frames), "alice", wire_format=wire_format)


def presence(serial: int, *items: dict) -> dict:
    return {"action": 14, "channel": "room", "presence": list(items), "msgSerial": serial}


def found(connection: ConnectionFrames) -> list[tuple[str, int]]:
    return [(f.requirement, f.index) for f in analyse([connection])]


def test_base64_data_on_a_msgpack_connection_is_found() -> None:
    frames = [
        {"action": 10, "channel": "room"},
        presence(0, {"action": 2, "data": "AAEC", "encoding": "base64"}),
        presence(1, {"action": 4, "data": b"\x00\x01\x02"}),  # a bin: right
        presence(2, {"action": 4, "data": "aGk=", "encoding": "utf-8/base64"}),
        {
            "action": 15,
            "channel": "room",
            "msgSerial": 3,
            "messages": [{"name": "m", "data": "AAEC", "encoding": "base64"}],
        },
    ]
    assert found(log(*frames)) == [(REQUIREMENT, 1), (REQUIREMENT, 3), (REQUIREMENT, 4)]
    [first, *_] = msgpack_binary_findings(log(*frames))
    assert "frame #1" in first.message and "'base64'" in first.message
    assert first.frame == frames[1]


def test_other_encodings_and_json_connections_are_not_judged() -> None:
    fine = [
        {"action": 10, "channel": "room"},
        presence(0, {"action": 2, "data": '{"a":1}', "encoding": "json"}),
        presence(1, {"action": 4, "data": b"\x00", "encoding": "utf-8"}),  # bin, residual utf-8
        presence(2, {"action": 4, "data": "base64", "encoding": "base64x"}),
        presence(3, {"action": 3}),
    ]
    assert found(log(*fine)) == []
    json_form = [
        {"action": 10, "channel": "room"},
        presence(0, {"action": 2, "data": "AAEC", "encoding": "base64"}),
    ]
    assert found(log(*json_form, wire_format="json")) == []  # RSL4d1: JSON's own form
    assert found(log(*json_form)) == [(REQUIREMENT, 1)]


def test_collect_records_the_adapters_wire_format() -> None:
    records = {protocol: empty_record() for protocol in ("msgpack", "json")}

    async def main() -> dict[str, str]:
        formats = {}
        for protocol, record in records.items():
            adapter = AblyWireAdapter({"protocol": protocol})
            await adapter.start()
            try:
                conn = await adapter.connect("alice")
                await conn.channel("room").presence.enter(b"\x00\xff")
                record.client_connections = {"alice": [conn.id]}
                [entry] = collect_wire_frames(record, adapter)
                formats[protocol] = entry.wire_format
                assert found(entry) == []
            finally:
                await adapter.stop()
        return formats

    assert asyncio.run(main()) == {"msgpack": "msgpack", "json": "json"}
    assert collect_wire_frames(empty_record(), ReferenceAdapter()) == []


def empty_record() -> Any:
    """A real `CaseRecord` of a scenario that was never run, for alice."""
    scenario = scenario_from_dict(
        {
            "name": "wire",
            "requirements": [REQUIREMENT],
            "clients": {"alice": {}},
            "channels": ["room"],
            "steps": [{"enter": {"client": "alice", "channel": "room"}}],
        }
    )

    async def build() -> Any:
        return CaseDriver(scenario, ReferenceAdapter(), RunSettings()).record

    record = asyncio.run(build())
    record.client_connections = {"alice": ["x1"]}
    record.client_ids = {"alice": "alice"}
    return record


def run_binary_case(protocol: str) -> Any:
    scenario = packaged("data/binary")

    async def main() -> Any:
        adapter = AblyWireAdapter({"protocol": protocol})
        await adapter.start()
        try:
            return await run_scenario(scenario, adapter, RunSettings())
        finally:
            await adapter.stop()

    return asyncio.run(main())


@pytest.mark.parametrize("protocol", ["msgpack", "json"])
def test_ably_wire_passes_in_both_formats(protocol: str) -> None:
    result = run_binary_case(protocol)
    assert result.outcome is Outcome.PASS, (result.error, result.violations)
    assert REQUIREMENT in result.requirements


def test_a_client_sending_base64_over_msgpack_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ably-wire client made to send binary data in the JSON form over MessagePack."""
    to_wire = client_connection.presence_to_wire

    def json_form(*args: Any, binary: bool = False, **kwargs: Any) -> dict:
        return to_wire(*args, binary=False, **kwargs)

    monkeypatch.setattr(client_connection, "presence_to_wire", json_form)
    result = run_binary_case("msgpack")
    assert result.outcome is Outcome.FAIL
    broken = {(v.check, v.requirement) for v in result.violations}
    assert broken == {("wire_msgpack_binary", REQUIREMENT)}, result.violations
    assert all("base64" in v.message for v in result.violations)
    # the same client in JSON is right: base64 is JSON's form (RSL4d1)
    assert run_binary_case("json").outcome is Outcome.PASS


def test_ably_python_msgpack_frames_send_bin() -> None:
    """ably-python 3.1.4, unmodified, with its default MessagePack: binary data as a bin."""
    pytest.importorskip("ably", reason="ably-python is in the dev extra: pip install -e '.[dev]'")
    from ably import AblyRealtime

    async def main() -> ConnectionFrames:
        server = PresenceServer(ServerConfig())
        await server.start()
        client = AblyRealtime(
            key=server.default_key,
            client_id="alice",
            endpoint=f"127.0.0.1:{server.port}",
            tls=False,
            use_binary_protocol=True,
            fallback_hosts=[],
        )
        try:
            await asyncio.wait_for(client.connection.once_async("connected"), 10)
            connection_id = client.connection.connection_manager.connection_id
            channel = client.channels.get("room")
            await asyncio.wait_for(channel.attach(), 10)
            await asyncio.wait_for(channel.presence.enter(b"\x00\x01\xff"), 10)
            await asyncio.wait_for(channel.presence.update(bytearray(b"\xfe")), 10)
            frames = server.frames(connection_id)
        finally:
            await client.close()
            await server.stop()
        return ConnectionFrames(connection_id, "alice", frames, "alice", wire_format="msgpack")

    connection = asyncio.run(main())
    items = [i for f in connection.frames if f.get("action") == 14 for i in f["presence"]]
    assert [type(i.get("data")) for i in items] == [bytes, bytes], items
    assert list(msgpack_binary_findings(connection)) == []
