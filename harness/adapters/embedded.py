"""The embedded reference server, shared by the adapters that test a *client* against it.

`ably-python`, `ably-js` and `bridge` drive an SDK (the implementation under test) against a
server. By default that server is the reference server (`presence_conformance.reference_impl.server`), started
in-process on a free port of 127.0.0.1 with a short leave grace, exactly as `ably-wire` starts
it; `EmbeddedServer` is that start-up, plus what those adapters need from it:

- `key_for(capability)`: an API key for a capability (a key is minted on the server per distinct
  capability; `None` or `{"*": ["*"]}` is the server's own full-capability key);
- `token_for(key, client_id)`: a token bound to that key (and clientId) for SDKs that refuse
  Basic auth over plain http (ably-python's REST client) or a wildcard clientId with a key
  (ably-js);
- `frames(connection_id)`: the client frames the server recorded (Feature.WIRE_FRAMES).

With `--adapter-option endpoint=HOST:PORT` (and `key=NAME:SECRET`) the adapters use another
server instead: `ServerTarget` describes either. The option parsers (`parse_float`,
`check_endpoint`, `check_key`) give the same `UsageError` messages in every adapter.
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from presence_conformance.harness.adapter import UsageError
from presence_conformance.harness.adapters.control import local_control

__all__ = [
    "DEFAULT_LEAVE_GRACE",
    "WIRE_PROTOCOLS",
    "EmbeddedServer",
    "ServerTarget",
    "check_endpoint",
    "check_key",
    "parse_float",
    "parse_protocol",
]

DEFAULT_LEAVE_GRACE = 0.3
FULL_CAPABILITY: dict[str, list[str]] = {"*": ["*"]}


def parse_float(
    adapter: str, options: Mapping[str, str], name: str, default: float, minimum: float = 0.0
) -> float:
    """`options[name]` as a finite float >= `minimum` (`default` when absent); UsageError else."""
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"adapter {adapter!r}: option {name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < minimum:
        raise UsageError(f"adapter {adapter!r}: option {name}={raw!r} must be >= {minimum:g}")
    return value


WIRE_PROTOCOLS = ("json", "msgpack")


def parse_protocol(adapter: str, options: Mapping[str, str], default: str) -> str:
    """`options["protocol"]`: the wire format, "json" or "msgpack" (`default` when absent; the
    SDKs' `useBinaryProtocol` true is "msgpack"); UsageError otherwise."""
    value = options.get("protocol", default)
    if value not in WIRE_PROTOCOLS:
        raise UsageError(
            f"adapter {adapter!r}: protocol={value!r}: expected json or msgpack (the realtime "
            "format=json text frames, or format=msgpack binary frames)"
        )
    return value


def parse_server_variants(adapter: str, options: Mapping[str, str]) -> tuple[frozenset[str], int]:
    """`options["server_variants"]` (names, comma-separated, or `all`) and `variant_seed`: the
    conforming variants of the embedded reference server (`reference_impl/server/variants.py`);
    UsageError naming a bad one."""
    from presence_conformance.reference_impl.server.config import ConfigError, parse_variants

    try:
        names = parse_variants(options.get("server_variants", ""))
    except ConfigError as exc:
        raise UsageError(f"adapter {adapter!r}: {exc}") from None
    raw = options.get("variant_seed", "0")
    try:
        seed = int(raw)
    except ValueError:
        raise UsageError(
            f"adapter {adapter!r}: variant_seed={raw!r}: expected an integer"
        ) from None
    return names, seed


def check_endpoint(adapter: str, endpoint: str) -> str:
    """`HOST:PORT` with a valid port; UsageError otherwise."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(
            f"adapter {adapter!r}: endpoint={endpoint!r}: expected HOST:PORT, e.g. 127.0.0.1:8080"
        )
    return endpoint


def check_key(adapter: str, key: str) -> str:
    """`NAME:SECRET`; UsageError otherwise."""
    name, sep, secret = key.partition(":")
    if not sep or not name or not secret:
        raise UsageError(
            f"adapter {adapter!r}: key={key!r}: expected NAME:SECRET, e.g. appid.keyid:secret"
        )
    return key


@dataclass
class ServerTarget:
    """Where the SDK under test connects: `endpoint` HOST:PORT and the API `key` to use."""

    endpoint: str
    key: str
    external: bool

    @property
    def host(self) -> str:
        return self.endpoint.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.endpoint.rpartition(":")[2])

    @classmethod
    def from_options(cls, adapter: str, options: Mapping[str, str]) -> ServerTarget:
        """`endpoint` + `key` options (another server), or neither (the embedded server)."""
        if "endpoint" in options:
            if "key" not in options:
                raise UsageError(f"adapter {adapter!r}: option endpoint needs key=NAME:SECRET too")
            return cls(
                check_endpoint(adapter, options["endpoint"]),
                check_key(adapter, options["key"]),
                True,
            )
        if "key" in options:
            raise UsageError(
                f"adapter {adapter!r}: option key only applies with endpoint=HOST:PORT "
                "(the embedded server has its own key)"
            )
        return cls("", "", False)


class EmbeddedServer:
    """The reference server in-process, with keys minted per capability.

    server = EmbeddedServer(leave_grace=0.3)
    endpoint = await server.start()          # "127.0.0.1:PORT"
    key = server.key_for({"room": ["subscribe"]})
    ...
    await server.stop()
    """

    def __init__(self, leave_grace: float = DEFAULT_LEAVE_GRACE, **config: Any) -> None:
        self.leave_grace = leave_grace
        self.config_args = {"leave_grace": leave_grace, **config}
        self.server: Any = None
        self.control: Any = None  # a LocalControl once started (Feature.SERVER_CONTROL)
        self.endpoint = ""
        self.key = ""
        self._names = itertools.count(1)
        self._capability_keys: dict[str, str] = {}

    async def start(self) -> str:
        """Start the server on a free port of 127.0.0.1; return its endpoint `HOST:PORT`."""
        from presence_conformance.reference_impl.server import PresenceServer, ServerConfig

        config = ServerConfig(**self.config_args)
        server = PresenceServer(config)
        host, port = await server.start("127.0.0.1", 0)
        self.server = server
        self.endpoint = f"{host}:{port}"
        self.key = server.default_key
        self.control = local_control(server)
        return self.endpoint

    async def stop(self) -> None:
        """Stop the server (idempotent)."""
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    @property
    def port(self) -> int:
        return int(self.endpoint.rpartition(":")[2])

    def key_for(self, capability: Mapping[str, list[str]] | None) -> str:
        """An API key `NAME:SECRET` granting `capability` (None: everything)."""
        if self.server is None:
            raise RuntimeError("EmbeddedServer.key_for() before start()")
        if capability is None or dict(capability) == FULL_CAPABILITY:
            return self.key
        canonical = repr(sorted((k, sorted(v)) for k, v in capability.items()))
        key = self._capability_keys.get(canonical)
        if key is None:
            name = f"harness.cap{next(self._names)}"
            key = self.server.add_key(
                name, secrets.token_urlsafe(12), {k: list(v) for k, v in capability.items()}
            )
            self._capability_keys[canonical] = key
        return key

    def token_for(self, key: str, client_id: str | None = None) -> str | None:
        """A token of `key` (its capability), bound to `client_id` when given (`*`: wildcard);
        None if the server does not know the key."""
        from presence_conformance.reference_impl.server import ConfigError

        if self.server is None:
            raise RuntimeError("EmbeddedServer.token_for() before start()")
        try:
            return self.server.issue_token(key.partition(":")[0], client_id=client_id)
        except ConfigError:
            return None

    def frames(self, connection_id: str) -> list[dict]:
        """Client->server frames the server recorded for `connection_id`."""
        if self.server is None:
            raise NotImplementedError("wire frames need the embedded server")
        return [dict(frame) for frame in self.server.frames(connection_id)]
