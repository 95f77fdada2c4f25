"""`presence-conformance serve`: run the reference server until Ctrl-C (or SIGTERM).

    presence-conformance serve [--host 127.0.0.1] [--port 8080] [--keys FILE] [--show-keys]
                               [--leave-grace 15] [--sync-page 100] [--ack-first]
                               [--history-max-count 10000] [--history-max-age 600]
                               [--max-connections 10000] [--max-sockets N]
                               [--max-sockets-per-ip N] [--allow-origin ORIGIN ...]
                               [--loop auto]

Prints where it listens and the names of its keys, e.g.
`listening on ws://127.0.0.1:8080 (REST http://127.0.0.1:8080) key appid.keyid`;
with `--show-keys` each key with its secret (`key appid.keyid:secret`), for a terminal only
the operator reads. Then the event loop it runs on, e.g. `event loop: uvloop 0.21.0`.

`--loop auto` (the default) runs on uvloop when it is installed (`pip install
'presence-conformance[fast]'`) and on asyncio's own loop otherwise; `--loop asyncio` never uses
uvloop; `--loop uvloop` requires it. The server behaves the same on both; uvloop's transports
make each socket write and read cheaper (see bench/bench_server.py --loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence

from presence_conformance.reference_impl.server.config import (
    SERVER_VARIANTS,
    ConfigError,
    ServerConfig,
    key_strings,
    load_keys_file,
    parse_variants,
)


def build_parser(prog: str = "presence-conformance serve") -> argparse.ArgumentParser:
    """The argument parser of `serve` (the harness CLI may reuse it for help)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the reference presence server: the Ably realtime protocol (JSON or "
        "MessagePack over ws://) at / and the REST presence endpoints, on one port.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8080,
        help="port to listen on; 0 picks a free one (default %(default)s)",
    )
    parser.add_argument(
        "--keys",
        metavar="FILE",
        help='JSON keys file: {"appid.keyid": {"secret": "...", "capability": '
        '{"*": ["*"]}}}; default: appid.keyid:secret with every capability',
    )
    parser.add_argument(
        "--leave-grace",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds before the members of an abruptly lost connection leave "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--sync-page",
        type=int,
        default=100,
        metavar="N",
        help="members per SYNC frame (default %(default)s)",
    )
    parser.add_argument(
        "--ack-first",
        action="store_true",
        help="ACK a PRESENCE before broadcasting its events (the sender's own echo too); "
        "default: broadcast first. Both orders are correct: this one checks that clients and "
        "test harnesses do not assume an event reached other connections when enter() returned",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME",
        help="a conforming variant: behaviour the Ably spec allows that the reference does not "
        "show by default (repeat, or NAME,NAME; 'all' for every one): "
        + ", ".join(sorted(SERVER_VARIANTS))
        + " (docs/server.md says what each does)",
    )
    parser.add_argument(
        "--variant-seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the variants' randomness (default %(default)s)",
    )
    parser.add_argument(
        "--show-keys",
        action="store_true",
        help="print each key with its secret (default: key names only)",
    )
    parser.add_argument(
        "--history-max-count",
        type=int,
        default=10000,
        metavar="N",
        help="presence events kept per channel, REST and realtime alike (default %(default)s)",
    )
    parser.add_argument(
        "--history-max-age",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds a presence event is kept in its channel's history (default %(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=10000,
        metavar="N",
        help="realtime connections open at once; more are refused with an ERROR "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--max-sockets",
        type=int,
        default=None,
        metavar="N",
        help="TCP sockets open at once (HTTP, WebSocket or idle); more are refused as they "
        "are accepted, a WebSocket upgrade with an ERROR frame (42910, statusCode 503), other "
        "requests with an HTTP 503 (default: --max-connections + 1000, lowered to the "
        "open-file limit less 128)",
    )
    parser.add_argument(
        "--max-sockets-per-ip",
        type=int,
        default=None,
        metavar="N",
        help="TCP sockets open at once from one client address; more are refused as above "
        "(default: no per-address limit; clients behind one NAT or on loopback share one)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="an Origin allowed to open WebSockets (repeatable; '*' allows any); always "
        "allowed: no Origin (SDKs) and the server's own host",
    )
    parser.add_argument(
        "--control",
        nargs="?",
        const="",
        default=None,
        metavar="TOKEN",
        help="serve the control endpoint (/control/command, /control/sent) for `server:` steps, "
        "guarded by this bearer token (at least 16 characters; without a value: "
        "$PRESENCE_CONFORMANCE_CONTROL_TOKEN); off by default",
    )
    parser.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="event loop: auto = uvloop when installed (pip install "
        "'presence-conformance[fast]'), else asyncio's (default %(default)s)",
    )
    return parser


def loop_factory(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """(description, loop factory or None for asyncio's default) for `--loop CHOICE`;
    ImportError when `uvloop` is asked for and not installed."""
    if choice == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ImportError(
                "--loop uvloop: uvloop is not installed (pip install 'presence-conformance[fast]')"
            ) from None
        return "asyncio (uvloop is not installed)", None
    return f"uvloop {uvloop.__version__}", uvloop.new_event_loop


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """A `ServerConfig` from parsed `serve` arguments; raises `ConfigError`."""
    kwargs: dict = {
        "leave_grace": args.leave_grace,
        "sync_page_size": args.sync_page,
        "ack_first": args.ack_first,
        "history_max_count": args.history_max_count,
        "history_max_age": args.history_max_age,
        "max_connections": args.max_connections,
        "max_sockets": args.max_sockets,
        "max_sockets_per_ip": args.max_sockets_per_ip,
        "allowed_origins": tuple(args.allow_origin),
        "variants": parse_variants(",".join(args.variant)),
        "variant_seed": args.variant_seed,
    }
    if args.keys:
        kwargs["keys"] = load_keys_file(args.keys)
    return ServerConfig(**kwargs)


async def _serve(
    config: ServerConfig,
    host: str,
    port: int,
    loop_name: str = "asyncio",
    show_keys: bool = False,
    control_token: str | None = None,
) -> None:
    from presence_conformance.reference_impl.server.app import PresenceServer

    server = PresenceServer(config)
    if control_token is not None:
        from presence_conformance.reference_impl.server.control import ServerControl
        from presence_conformance.reference_impl.server.control_http import add_control_routes

        control = server.control = ServerControl(server.realtime, server.now)  # type: ignore[attr-defined]
        server.route_hooks.append(lambda app: add_control_routes(app, control, control_token))
    bound_host, bound_port = await server.start(host, port)
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    keys = " ".join(key_strings(config.keys, secrets_too=show_keys))
    print(
        f"listening on ws://{shown}:{bound_port} (REST http://{shown}:{bound_port}) key {keys}",
        flush=True,
    )
    print(f"event loop: {loop_name}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
        print("stopped", flush=True)


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `presence-conformance serve`; returns the exit code (2 on bad options)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["serve"]:
        args_list = args_list[1:]
    parser = build_parser()
    args = parser.parse_args(args_list)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port: {args.port} is not a port number")
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"presence-conformance serve: error: {exc}", file=sys.stderr)
        return 2
    from presence_conformance.reference_impl.server.control_http import (
        CONTROL_TOKEN_ENV,
        MIN_TOKEN_LENGTH,
    )

    control_token = args.control
    if control_token == "":
        control_token = os.environ.get(CONTROL_TOKEN_ENV, "")
        if not control_token:
            print(
                f"presence-conformance serve: error: --control without a token needs "
                f"${CONTROL_TOKEN_ENV}",
                file=sys.stderr,
            )
            return 2
    if control_token is not None and len(control_token) < MIN_TOKEN_LENGTH:
        print(
            f"presence-conformance serve: error: --control: the token needs at least "
            f"{MIN_TOKEN_LENGTH} characters",
            file=sys.stderr,
        )
        return 2
    try:
        loop_name, factory = loop_factory(args.loop)
    except ImportError as exc:
        print(f"presence-conformance serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(
                _serve(config, args.host, args.port, loop_name, args.show_keys, control_token)
            )
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(
            f"presence-conformance serve: error: cannot listen on {args.host}:{args.port} "
            f"({exc.strerror or exc})",
            file=sys.stderr,
        )
        return 1
    return 0
