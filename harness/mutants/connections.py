"""Mutants that break connections: close, reconnect."""

from __future__ import annotations

from typing import Any

from presence_conformance.harness.adapters.reference import ReferenceConnection
from presence_conformance.harness.mutants.base import MutantAdapter, mutant


def _disconnect_silently(connection: ReferenceConnection) -> None:
    """Cut the connection without leaving and without the grace timer: its members stay."""
    conn = connection.service_connection
    if conn.state != "connected":
        return
    conn._service.model.drop_connection(conn.id)
    conn._shutdown()


@mutant("close-keeps-members", "disconnect.close-leaves")
class CloseKeepsMembers(MutantAdapter):
    """A graceful close does not remove the connection's members: they stay present for ever
    and nobody hears a leave (close handled like a transport drop, without its timer)."""

    class Connection(ReferenceConnection):
        async def close(self) -> None:
            _disconnect_silently(self)


@mutant("close-leaves-first-channel-only", "disconnect.close-leaves")
class CloseLeavesFirstChannelOnly(MutantAdapter):
    """Closing a connection makes its member leave one channel only (the first it entered);
    on its other channels the member stays (pusher-js #4)."""

    class Connection(ReferenceConnection):
        async def close(self) -> None:
            conn = self.service_connection
            model = conn._service.model
            for name in model.channels():
                if conn.client_id and model.get(name, conn.client_id, conn.id):
                    await self.channel(name).presence.leave()
                    break
            _disconnect_silently(self)


@mutant("reconnect-reuses-connection-id", "disconnect.reconnect-new-member")
class ReconnectReusesConnectionId(MutantAdapter):
    """A client that connects again is given the connectionId of its first connection (a
    resume key confused with a new connection)."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.first_ids: dict[str | None, str] = {}

    async def connect(
        self, client_id: str | None, capability: dict[str, list[str]] | None = None
    ) -> ReferenceConnection:
        conn = await super().connect(client_id, capability)
        if client_id is not None:
            conn.id = self.first_ids.setdefault(client_id, conn.id)
        return conn


@mutant("token-identity-taken", "member.identity-from-credential")
class TokenIdentityTaken(MutantAdapter):
    """A connection takes the clientId it claims in the connect request whatever its token
    says: a token issued without a clientId, or for another one, acts as anyone (the identity
    hole of a server that reads `clientId=` from the URL before the token; TK2c, TD6)."""

    async def connect_with_token(
        self,
        client_id: str | None,
        capability: dict[str, list[str]] | None,
        token_client_id: str | None,
    ) -> Any:
        return await self.connect(
            client_id if client_id is not None else token_client_id, capability
        )
