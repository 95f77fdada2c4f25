"""How an adapter hands the run layer its server's control (Feature.SERVER_CONTROL, `server:` steps).

An adapter that declares `server-control` has an attribute `server_control` (a `ControlClient`):
`run(command)` issues one command of `reference_impl/server/control.py` and returns the frames
it sent; `sent(connection_id, channel)` returns every channel frame the server sent to that
connection, which the `client.*` checks feed to the client-side oracle.

- `LocalControl`: the embedded reference server, in-process (`ably-wire`, `ably-python`,
  `ably-js`, `bridge` without `endpoint=`).
- `HttpControl`: a server run with `presence-conformance serve --control`, over its
  authenticated HTTP control endpoint (`ably-wire` with `endpoint=` and `control_token=`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["ControlClient", "ControlError", "HttpControl", "LocalControl", "local_control"]


class ControlError(RuntimeError):
    """The server refused or could not run a command (the scenario or the adapter is wrong)."""


class ControlClient(Protocol):
    """What the run layer calls (see the module docstring)."""

    async def run(self, command: Mapping[str, Any]) -> list[dict[str, Any]]: ...

    async def sent(self, connection_id: str, channel: str) -> list[dict[str, Any]]: ...


class LocalControl:
    """The control of an in-process reference server (`PresenceServer`)."""

    def __init__(self, control: Any) -> None:
        self.control = control

    async def run(self, command: Mapping[str, Any]) -> list[dict[str, Any]]:
        from presence_conformance.reference_impl.server.control import CommandError

        try:
            return [dict(f) for f in self.control.run(command)]
        except CommandError as exc:
            raise ControlError(str(exc)) from None

    async def sent(self, connection_id: str, channel: str) -> list[dict[str, Any]]:
        return self.control.sent_frames(connection_id, channel)


def local_control(server: Any) -> LocalControl:
    """Install a `ServerControl` on an in-process `PresenceServer` (once) and wrap it."""
    from presence_conformance.reference_impl.server.control import ServerControl

    control = getattr(server, "control", None)
    if control is None:
        control = server.control = ServerControl(server.realtime, server.now)
    return LocalControl(control)


class HttpControl:
    """The control endpoint of a server run with `serve --control` (bearer token)."""

    def __init__(self, session: Any, base_url: str, token: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.token = token

    async def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        from presence_conformance.reference_impl.server.control_http import from_json, to_json

        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.post(
            f"{self.base_url}{path}", json=to_json(dict(body)), headers=headers
        ) as response:
            payload = await response.json(content_type=None)
            if response.status != 200:
                raise ControlError(f"control endpoint: HTTP {response.status}: {payload}")
            return from_json(payload)

    async def run(self, command: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list((await self._post("/control/command", command))["frames"])

    async def sent(self, connection_id: str, channel: str) -> list[dict[str, Any]]:
        body = {"connection": connection_id, "channel": channel}
        return list((await self._post("/control/sent", body))["frames"])
