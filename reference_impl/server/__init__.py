"""The reference presence server on the Ably realtime protocol (JSON over plain ws://) and REST.

- `PresenceServer(config)`: `await start(host, port) -> (host, port)`, `await stop()`, `.port`,
  `.url`, `frames(connection_id)`, `add_key`, `issue_token`, `drop`, `expire_now`, `.model`.
- `ServerConfig`, `KeySpec`: keys with capabilities, leave grace, SYNC page size, limits.
- `load_keys_file(path)`: keys from JSON `{"appid.keyid": {"secret": ..., "capability": ...}}`.
- `serve_main(argv)`: `presence-conformance serve [--host] [--port] [--keys] [--leave-grace]
  [--sync-page]`, also `python -m presence_conformance.reference_impl.server`.
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
