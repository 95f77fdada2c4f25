"""A small user project the front-end tests share: three scenario files (`SCENARIOS`, relative
path -> YAML) and a module of adapters that break in the ways a front end must survive (`BROKEN`).

Used by the CLI tests (tests/harness/cli/) and the pytest-plugin tests (tests/harness/pytest_plugin/).
"""

from __future__ import annotations

SCENARIOS = {
    "enter/adds-member.yaml": """
description: A member that entered is in the presence set, with its data.
requirements: [enter.adds-member, enter.data]
clients:
  alice: {client_id: alice}
  bob: {client_id: bob}
channels: [room]
steps:
  - subscribe: {client: bob, channel: room, listener: L1}
  - enter: {client: alice, channel: room, data: {mood: happy}}
  - get: {client: bob, channel: room, expect: [{client: alice, data: {mood: happy}}]}
""",
    "get/filter-client-id.yaml": """
description: get(clientId) returns only that client's members.
requirements: [get.filter-client-id]
clients:
  alice: {client_id: alice}
  bob: {client_id: bob}
channels: [room]
steps:
  - enter: {client: alice, channel: room, data: a}
  - enter: {client: bob, channel: room, data: b}
  - get: {client: bob, channel: room, client_id: alice, expect: [{client: alice, data: a}]}
""",
    "history/one-event.yaml": """
description: An enter is in the history.
requirements: [history.returns-events]
requires: [history]
clients:
  alice: {client_id: alice}
channels: [room]
steps:
  - enter: {client: alice, channel: room, data: a}
  - history: {client: alice, channel: room, expect_count: 1}
""",
}

BROKEN = '''
"""Adapters that break in the ways the CLI must survive."""

import asyncio

from presence_conformance.harness.adapters.reference import ReferenceAdapter, ReferenceConnection, ReferencePresence


class IgnoresClientId(ReferencePresence):
    async def get(self, client_id=None, connection_id=None, wait_for_sync=True):
        return await super().get(None, connection_id, wait_for_sync)


class IgnoresClientIdConnection(ReferenceConnection):
    presence_class = IgnoresClientId


class BrokenAdapter(ReferenceAdapter):
    """get() ignores the clientId filter."""

    name = "broken"
    connection_class = IgnoresClientIdConnection


class CannotStart(ReferenceAdapter):
    async def start(self):
        raise ConnectionRefusedError("no server on 127.0.0.1:1")


class CrashesOnConnect(ReferenceAdapter):
    async def connect(self, client_id, capability=None):
        raise RuntimeError("adapter bug")


class HangsOnConnect(ReferenceAdapter):
    async def connect(self, client_id, capability=None):
        await asyncio.Event().wait()
'''
