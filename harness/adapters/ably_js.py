"""`ably-js`: the official Ably JavaScript SDK (the `ably` npm package, 2.x) under node, as the
implementation under test, through the bridge protocol (`presence_conformance.harness.adapters.bridge`).

The node side ships inside the package, in `ably_js_node/` next to this module: the bridge child
`ably_bridge.mjs`, `package.json` and `package-lock.json` (which pins the ably-js version), and
`sdk_smoke.mjs` (a standalone smoke run the project's tests use). The one extra step is `npm ci`
in a folder that holds those files:

    (cd harness/adapters/ably_js_node && npm ci)          # a checkout: the packaged folder
    presence-conformance run --adapter ably-js

    python -m presence_conformance.harness.adapters.ably_js ~/pc-node   # an install: copy them
    (cd ~/pc-node && npm ci)
    presence-conformance run --adapter ably-js --adapter-option node_dir=~/pc-node
                                            # or: export PRESENCE_CONFORMANCE_NODE_DIR=~/pc-node

The child is `node ably_bridge.mjs`, run in the node folder so that it finds `node_modules/ably`.
It connects every client to the embedded reference server (or to `endpoint` with `key`) with the
options of docs/protocol.md §1.3 (plain ws, web_socket transport only, no fallback hosts;
`useBinaryProtocol` from `--adapter-option protocol=msgpack|json`, msgpack by default as in
ably-js itself: realtime `format=msgpack` binary frames, REST `Accept: application/x-msgpack`;
the child reads it from `$PRESENCE_CONFORMANCE_ABLY_PROTOCOL`) and maps each operation to the
ably-js call of the same name; `presence.history` is REST in
ably-js (GET /channels/{name}/presence/history over plain http with Basic auth, pages followed
with `PaginatedResult.next()`); a wildcard client connects with a token bound to `*` (ably-js
refuses clientId `*` with a key); `drop` cuts the client's TCP relay, then closes the client
(see `ably_js_node/ably_bridge.mjs`).

The node folder is the `node_dir` option, else `$PRESENCE_CONFORMANCE_NODE_DIR`, else the
packaged folder. A missing `node`, a folder without the bridge or `node_modules`, or a bridge
script that is not this version's is a usage error that says what to run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from presence_conformance.harness.adapter import ALL_FEATURES, Feature, UsageError
from presence_conformance.harness.adapters.bridge import BridgeAdapter
from presence_conformance.harness.adapters.embedded import parse_protocol

__all__ = ["NODE_DIR_ENV", "NODE_FILES", "AblyJsAdapter", "copy_node_files", "default_node_dir"]

NAME = "ably-js"
# this module's name for messages (under `python -m`, __name__ is "__main__")
MODULE = "presence_conformance.harness.adapters.ably_js"
SCRIPT = "ably_bridge.mjs"
PROTOCOL_ENV = "PRESENCE_CONFORMANCE_ABLY_PROTOCOL"
NODE_DIR_ENV = "PRESENCE_CONFORMANCE_NODE_DIR"
NODE_FILES = (SCRIPT, "sdk_smoke.mjs", "package.json", "package-lock.json")
"""The files of the packaged node folder (everything `npm ci` and the bridge need)."""


def packaged_node_dir() -> Path:
    """The node folder shipped in the package (`ably_js_node/` next to this module)."""
    return Path(__file__).resolve().parent / "ably_js_node"


def default_node_dir() -> Path:
    """`$PRESENCE_CONFORMANCE_NODE_DIR` if set, else the packaged node folder."""
    return Path(os.environ.get(NODE_DIR_ENV) or packaged_node_dir())


def copy_node_files(dest: Path) -> list[Path]:
    """Copy the packaged node files into `dest` (created if needed); returns the copies."""
    dest.mkdir(parents=True, exist_ok=True)
    source = packaged_node_dir()
    return [Path(shutil.copy2(source / name, dest / name)) for name in NODE_FILES]


class AblyJsAdapter(BridgeAdapter):
    """The official ably-js SDK (2.x, under node) against the embedded reference server."""

    name: ClassVar[str] = NAME
    # what ably_bridge.mjs declares in hello (the real set comes from hello at start)
    features: frozenset[Feature] = ALL_FEATURES | {  # type: ignore[misc]
        Feature.WIRE_FRAMES,
        Feature.CHANNEL_EVENTS,
    }
    options: ClassVar[Mapping[str, str]] = {
        **{k: v for k, v in BridgeAdapter.options.items() if k not in ("command", "cwd")},
        "node": "the node executable (default: `node` on PATH)",
        "node_dir": f"the folder with {SCRIPT} and node_modules (default: ${NODE_DIR_ENV}, "
        "else the packaged ably_js_node folder)",
        "protocol": "msgpack or json: ably-js's useBinaryProtocol true or false (default "
        "msgpack, the SDK's own default in node)",
    }
    quiet_period = 0.2

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        self.protocol = parse_protocol(NAME, self.option_values, "msgpack")

    def child_command(self, options: Mapping[str, str]) -> list[str]:
        node_dir = Path(options.get("node_dir") or default_node_dir()).expanduser()
        script = node_dir / SCRIPT
        setup = (
            f"python -m {MODULE} {node_dir} && (cd {node_dir} && npm ci), or give "
            "--adapter-option node_dir=DIR"
        )
        if not script.is_file():
            raise UsageError(f"adapter {NAME!r}: {script} not found; run: {setup}")
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
        packaged = packaged_node_dir() / SCRIPT
        if script.resolve() != packaged and script.read_bytes() != packaged.read_bytes():
            raise UsageError(
                f"adapter {NAME!r}: {script} is not this version's bridge; copy the node "
                f"files again: python -m {MODULE} {node_dir} && (cd {node_dir} && npm ci)"
            )
        self._node_dir = node_dir
        return [node, str(script)]

    def default_cwd(self) -> str | None:
        return str(self._node_dir)

    def child_env(self) -> dict[str, str]:
        """The harness's environment, with the wire format for the child."""
        return {**super().child_env(), PROTOCOL_ENV: self.protocol}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m presence_conformance.harness.adapters.ably_js DIR`: copy the node files."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Copy the ably-js adapter's node files (bridge script, package.json, "
        "lockfile) into DIR, where `npm ci` then installs the pinned ably-js.",
    )
    parser.add_argument("dir", type=Path, help="the folder to copy them into (created)")
    args = parser.parse_args(argv)
    dest = args.dir.expanduser()
    for path in copy_node_files(dest):
        print(f"copied {path}")
    print(
        f"next: (cd {dest} && npm ci), then run with --adapter-option node_dir={dest} "
        f"(or export {NODE_DIR_ENV}={dest})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
