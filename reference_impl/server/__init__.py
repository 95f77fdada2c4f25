"""The reference presence server on the Ably realtime protocol (JSON over plain ws://) and REST.

- `PresenceServer(config)`: `await start(host, port) -> (host, port)`, `await stop()`, `.port`,
  `.url`, `frames(connection_id)`, `add_key`, `issue_token`, `drop`, `expire_now`, `.model`.
- `ServerConfig`, `KeySpec`: keys with capabilities, leave grace, SYNC page size, limits.
- `load_keys_file(path)`: keys from JSON `{"appid.keyid": {"secret": ..., "capability": ...}}`.
- `serve_main(argv)`: `presence-conformance serve [--host] [--port] [--keys] [--show-keys]
  [--leave-grace] [--sync-page] [--history-max-count] [--history-max-age] [--max-connections]
  [--allow-origin]`, also `python -m presence_conformance.reference_impl.server`.

Inside, one module per job (`app.py` assembles them): `auth` (keys, tokens and the token
endpoint's checks, capabilities, token identity), `transport` (WebSockets, frames in and out,
the Origin check), `limits` (handshake timeout, the TCP socket cap, log rate), `realtime` (the connection and channel protocol),
`rest` (REST endpoints), `inspection` (what tests read, faults they inject); `wire` (frame
errors, data encodings, the wire form of presence messages), `config`, `cli`, and `testing`
(a raw protocol client for tests of the server).
"""

from presence_conformance.reference_impl.server.app import PresenceServer
from presence_conformance.reference_impl.server.cli import serve_main
from presence_conformance.reference_impl.server.config import (
    ConfigError,
    KeySpec,
    ServerConfig,
    TokenSpec,
    load_keys_file,
)

__all__ = [
    "ConfigError",
    "KeySpec",
    "PresenceServer",
    "ServerConfig",
    "TokenSpec",
    "load_keys_file",
    "serve_main",
]
