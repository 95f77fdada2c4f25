"""`ClientState`: one scenario client as the case driver follows it (its connection in the
adapter and in the model, whether it was refused, its listeners)."""

from __future__ import annotations

from dataclasses import dataclass, field

from presence_conformance.harness.adapter import AdapterConnection, PresenceError
from presence_conformance.harness.record.records import ListenerRecord
from presence_conformance.harness.scenario import ClientSpec

__all__ = ["ClientState"]


@dataclass(eq=False)
class ClientState:
    """A scenario client: its current connection, in the adapter and in the model."""

    spec: ClientSpec
    conn: AdapterConnection | None = None
    connection_id: str | None = None  # also set for a refused connection (model-only id)
    connected: bool = False
    refused: PresenceError | None = None
    refusal_allowed: bool = False  # the model refuses this connection too (clientId "*")
    listeners: dict[tuple[str, str], ListenerRecord] = field(default_factory=dict)

    @property
    def model_client_id(self) -> str | None:
        """The identity the model gives the connection: none for a connection that claims a
        clientId its token does not allow (whatever it may do, it may not act as the claimed
        one: TK2c, TD6); the token's for a connection that claims none."""
        spec = self.spec
        cid = spec.client_id
        if spec.token_given:
            if spec.claims_other_identity:
                return None
            if cid is None:
                cid = spec.token_client_id
        return None if cid == "*" else cid

    @property
    def cid(self) -> str:
        """The connection id of a client that has connected (the scenario loader allows a
        step only for a connected client)."""
        if self.connection_id is None:
            raise RuntimeError(f"client {self.spec.name!r} has not connected")
        return self.connection_id
