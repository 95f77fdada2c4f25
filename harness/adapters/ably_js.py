"""`ably-js`: the official Ably JavaScript SDK (the `ably` npm package, 2.x) under node, as the
implementation under test, through the bridge protocol (`presence_conformance.harness.adapters.bridge`).

    (cd node && npm ci)
    presence-conformance run --adapter ably-js

The child is `node node/ably_bridge.mjs`, run in `node/` so that it finds `node_modules/ably`
(the version pinned by `node/package-lock.json`). It connects every client to the embedded
reference server (or to `endpoint` with `key`) with the options of docs/protocol.md (plain ws,
web_socket transport only, no fallback hosts; `useBinaryProtocol` from `--adapter-option
protocol=msgpack|json`, msgpack by default as in ably-js itself: realtime `format=msgpack`
binary frames, REST `Accept: application/x-msgpack`; the child reads it from
`$PRESENCE_CONFORMANCE_ABLY_PROTOCOL`) and maps each operation to the ably-js call of the same name; `presence.history` is REST
in ably-js (GET /channels/{name}/presence/history over plain http with Basic auth, pages followed
with `PaginatedResult.next()`); a wildcard client connects with a token bound to `*` (ably-js
refuses clientId `*` with a key); `drop` cuts the client's TCP relay, then closes the client
(see `node/ably_bridge.mjs`).

`node/` is found next to the `harness` package (a checkout or an editable install); options
`node_dir` and `node` point elsewhere. A missing `node` or `node_modules` is a usage error that
says what to run.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from presence_conformance.harness.adapter import ALL_FEATURES, Feature, UsageError
from presence_conformance.harness.adapters.bridge import BridgeAdapter
from presence_conformance.harness.adapters.embedded import parse_protocol

__all__ = ["AblyJsAdapter", "default_node_dir"]

NAME = "ably-js"
SCRIPT = "ably_bridge.mjs"
PROTOCOL_ENV = "PRESENCE_CONFORMANCE_ABLY_PROTOCOL"


def default_node_dir() -> Path:
    """`node/` next to the `harness` package (the repository's node folder)."""
    import presence_conformance.harness

    return Path(presence_conformance.harness.__file__).resolve().parent.parent / "node"


class AblyJsAdapter(BridgeAdapter):
    """The official ably-js SDK (2.x, under node) against the embedded reference server."""

    name: ClassVar[str] = NAME
    # what node/ably_bridge.mjs declares in hello (the real set comes from hello at start)
    features: frozenset[Feature] = ALL_FEATURES | {Feature.WIRE_FRAMES}  # type: ignore[misc]
    options: ClassVar[Mapping[str, str]] = {
        **{k: v for k, v in BridgeAdapter.options.items() if k not in ("command", "cwd")},
        "node": "the node executable (default: `node` on PATH)",
        "node_dir": "the folder with ably_bridge.mjs and node_modules (default: node/ next to "
        "the harness package)",
        "protocol": "msgpack or json: ably-js's useBinaryProtocol true or false (default "
        "msgpack, the SDK's own default in node)",
    }
    quiet_period = 0.2

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        self.protocol = parse_protocol(NAME, self.option_values, "msgpack")

    def child_command(self, options: Mapping[str, str]) -> list[str]:
        node_dir = Path(options.get("node_dir") or default_node_dir())
        script = node_dir / SCRIPT
        if not script.is_file():
            raise UsageError(
                f"adapter {NAME!r}: {script} not found; ably-js runs from the "
                "repository's node/ folder (or give --adapter-option node_dir=DIR)"
            )
        if not (node_dir / "node_modules" / "ably" / "package.json").is_file():
            raise UsageError(
                f"adapter {NAME!r}: {node_dir / 'node_modules'} has no ably package: "
                f"run npm ci in {node_dir}"
            )
        node = options.get("node") or shutil.which("node")
        if not node or not (shutil.which(node) or Path(node).is_file()):
            raise UsageError(
                f"adapter {NAME!r}: node is not installed (or not on PATH); install "
                "Node.js 18+ or give --adapter-option node=/path/to/node"
            )
        self._node_dir = node_dir
        return [node, str(script)]

    def default_cwd(self) -> str | None:
        return str(self._node_dir)

    def child_env(self) -> dict[str, str]:
        """The harness's environment, with the wire format for the child."""
        return {**super().child_env(), PROTOCOL_ENV: self.protocol}
