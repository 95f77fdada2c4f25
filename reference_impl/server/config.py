"""Configuration of the reference server: API keys with capabilities, tokens, limits and timings.

A key is `appId.keyId:secret` (Ably's form); its capability maps channel patterns to operations
(`presence`, `subscribe`, `publish`, `history`, `*`), Ably-style: `*` matches every channel,
`prefix:*` every channel starting with `prefix:`, anything else one channel exactly.

A keys file is JSON: `{"appid.keyid": {"secret": "...", "capability": {"*": ["*"]}}}`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Capability = dict[str, list[str]]

ALL_CAPABILITIES: Capability = {"*": ["*"]}
DEFAULT_KEY_NAME = "appid.keyid"
DEFAULT_KEY_SECRET = "secret"
OPERATIONS = frozenset(
    {
        "*",
        "presence",
        "subscribe",
        "publish",
        "history",
        "channel-metadata",
        "object-subscribe",
        "object-publish",
        "annotation-subscribe",
        "annotation-publish",
        "push-subscribe",
        "push-admin",
        "stats",
        "statistics",
        "privileged-headers",
    }
)


SERVER_VARIANTS = frozenset(
    {
        "jitter",
        "sync-shuffle",
        "sync-pages",
        "sync-no-cursor",
        "sync-empty",
        "resync",
        "id-shapes",
        "clock-skew",
        "history-pages",
        "ack-batch",
        "split-presence",
    }
)
"""The names `ServerConfig.variants` accepts (`variants.VARIANTS` says what each does)."""

FD_RESERVE = 128  # descriptors kept for refusals, files and the loop (see effective_max_sockets)


def open_file_limit() -> int:
    """The process's soft limit on open files (a large number where there is none)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return 1 << 20
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY or soft < 0 else int(soft)


class ConfigError(ValueError):
    """A malformed key, keys file or option; the message names the offending part."""


@dataclass(frozen=True)
class KeySpec:
    """One API key: its secret and what it may do (`capability`: channel pattern -> operations)."""

    secret: str
    capability: Capability = field(default_factory=lambda: dict(ALL_CAPABILITIES))


@dataclass(frozen=True)
class TokenSpec:
    """An opaque token issued by `PresenceServer.issue_token` or the token endpoint (no
    signature); `expires` in ms since the epoch, None: never."""

    key_name: str
    client_id: str | None
    capability: Capability
    expires: int | None = None


@dataclass
class ServerConfig:
    """Everything the reference server can be told.

    Times are in seconds unless the name ends in `_ms` or is one of Ably's own millisecond
    fields (`max_idle_interval`, `connection_state_ttl`), which go to clients as they are.
    """

    keys: dict[str, KeySpec] = field(
        default_factory=lambda: {
            DEFAULT_KEY_NAME: KeySpec(DEFAULT_KEY_SECRET, dict(ALL_CAPABILITIES))
        }
    )
    leave_grace: float = 15.0  # abrupt disconnect -> synthesized leaves after this (RTP2b1)
    sync_page_size: int = 100  # members per SYNC frame (RTP18)
    # ACK (or NACK) a PRESENCE before broadcasting its events, the sender's own echo included.
    # Off: broadcast first. The protocol allows both; on, it tests that a client (or the
    # harness) does not assume delivery to other connections when its call returns.
    ack_first: bool = False
    max_message_size: int = 65536  # CD2c / TO3l8: bytes of one ProtocolMessage's payload
    max_frame_size: int = 524288  # CD2d: bytes of one WebSocket frame
    max_idle_interval: int = 15000  # CD2h, ms: clients drop the transport after this silence
    connection_state_ttl: int = 120000  # CD2f, ms
    heartbeat_interval: float | None = None  # s; None: a third of max_idle_interval; 0: never
    server_id: str = "presence-conformance-reference"
    frame_log_size: int = 2000  # client frames kept per connection for wire checks
    frame_log_connections: int = 5000  # connections whose frame logs are kept
    max_outbound_queue: int = 20000  # frames queued to one slow client before it is cut off
    max_channel_name_length: int = 1024
    # Bounded state (docs/protocol.md §14, "Reference server limits"):
    history_max_count: int | None = 10000  # presence events kept per channel (None: no bound)
    history_max_age: float | None = 600.0  # s an event is kept in a channel's history
    sweep_interval: float = 10.0  # s between frees of idle channels and expired history
    frame_log_bytes: int = 2 << 20  # bytes of recorded frames per connection
    frame_log_total_bytes: int = 64 << 20  # bytes of recorded frames, all connections
    max_connections: int = 10000  # realtime connections open at once; more are refused
    # TCP sockets open at once (HTTP, WebSocket or silent); more are refused at accept (see
    # limits.SocketCap). None: max_connections + 1000, lowered to fit the open-file limit.
    max_sockets: int | None = None
    max_sockets_per_ip: int | None = None  # sockets open at once from one address (None: any)
    handshake_timeout: float = 10.0  # s a TCP connection may take to send its first request
    keepalive_timeout: float = 15.0  # s an idle HTTP keep-alive connection is kept
    # WebSocket upgrades: Origins accepted besides none (SDKs send none) and the server's own
    # host; "*" accepts every Origin.
    allowed_origins: tuple[str, ...] = ()
    log_rate: int = 20  # log lines of one kind per `log_rate_period`; more are counted, not logged
    log_rate_period: float = 10.0
    # Conforming variants (`variants.py`): behaviours the Ably spec allows that the reference
    # does not show by default, by name; their randomness is drawn from `variant_seed`.
    variants: frozenset[str] = frozenset()
    variant_seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.keys, Mapping) or not self.keys:
            raise ConfigError("keys: at least one key is needed")
        for name, spec in self.keys.items():
            check_key_name(name)
            if not isinstance(spec, KeySpec):
                raise ConfigError(f"keys[{name!r}]: expected a KeySpec, got {type(spec).__name__}")
            check_capability(spec.capability, f"keys[{name!r}].capability")
        if self.leave_grace < 0:
            raise ConfigError(f"leave_grace: expected >= 0 seconds, got {self.leave_grace!r}")
        if not isinstance(self.sync_page_size, int) or self.sync_page_size < 1:
            raise ConfigError(
                f"sync_page_size: expected an integer >= 1, got {self.sync_page_size!r}"
            )
        if self.max_message_size < 1 or self.max_frame_size < self.max_message_size:
            raise ConfigError("max_frame_size must be at least max_message_size, both positive")
        if self.max_idle_interval < 0:
            raise ConfigError(
                f"max_idle_interval: expected >= 0 ms, got {self.max_idle_interval!r}"
            )
        if self.history_max_count is not None and self.history_max_count < 1:
            raise ConfigError(
                f"history_max_count: expected >= 1 or None, got {self.history_max_count!r}"
            )
        if self.history_max_age is not None and self.history_max_age <= 0:
            raise ConfigError(
                f"history_max_age: expected > 0 seconds or None, got {self.history_max_age!r}"
            )
        if self.max_connections < 1:
            raise ConfigError(f"max_connections: expected >= 1, got {self.max_connections!r}")
        for name in ("max_sockets", "max_sockets_per_ip"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}: expected an integer >= 1 or None, got {value!r}")
        if isinstance(self.variants, str) or not all(isinstance(v, str) for v in self.variants):
            raise ConfigError(f"variants: expected a set of variant names, got {self.variants!r}")
        self.variants = frozenset(self.variants)
        unknown = sorted(self.variants - SERVER_VARIANTS)
        if unknown:
            raise ConfigError(
                f"variants: unknown {unknown}; expected some of {sorted(SERVER_VARIANTS)}"
            )
        if not isinstance(self.variant_seed, int):
            raise ConfigError(f"variant_seed: expected an integer, got {self.variant_seed!r}")
        for name in ("handshake_timeout", "keepalive_timeout", "sweep_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: expected > 0 seconds, got {getattr(self, name)!r}")

    @property
    def history_max_age_ms(self) -> int | None:
        """`history_max_age` in ms (the model's unit)."""
        return None if self.history_max_age is None else int(self.history_max_age * 1000)

    @property
    def effective_max_sockets(self) -> int:
        """The TCP socket cap in force: `max_sockets`, or by default `max_connections` + 1000
        (room for REST and handshakes) lowered to the process's open-file limit less
        `FD_RESERVE`, so that accepting never fails for want of a descriptor."""
        if self.max_sockets is not None:
            return self.max_sockets
        return max(1, min(self.max_connections + 1000, open_file_limit() - FD_RESERVE))

    @property
    def effective_heartbeat_interval(self) -> float:
        """Seconds between server HEARTBEATs (0: none). Always below maxIdleInterval."""
        if self.heartbeat_interval is not None:
            return max(0.0, self.heartbeat_interval)
        return self.max_idle_interval / 3000.0


def parse_variants(text: str) -> frozenset[str]:
    """Variant names from `a,b c` (commas or spaces); `all` stands for every variant.
    ConfigError names any unknown one."""
    names = frozenset(n for n in text.replace(",", " ").split() if n)
    if "all" in names:
        names = (names - {"all"}) | SERVER_VARIANTS
    unknown = sorted(names - SERVER_VARIANTS)
    if unknown:
        raise ConfigError(
            f"server variants: unknown {unknown}; expected some of {sorted(SERVER_VARIANTS)} or all"
        )
    return names


def check_key_name(name: Any) -> None:
    """A key name is `appId.keyId`: non-empty, with neither `:` nor whitespace."""
    if not isinstance(name, str) or not name or ":" in name or any(c.isspace() for c in name):
        raise ConfigError(f"key name {name!r}: expected 'appId.keyId' without ':' or spaces")


def check_capability(capability: Any, where: str = "capability") -> Capability:
    """Validate an Ably-style capability; return it. Raises `ConfigError` naming the bad part."""
    if not isinstance(capability, Mapping) or not capability:
        raise ConfigError(f"{where}: expected a non-empty object of channel pattern -> operations")
    for pattern, ops in capability.items():
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{where}: channel pattern {pattern!r} must be a non-empty string")
        if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
            raise ConfigError(f"{where}[{pattern!r}]: expected a list of operation names")
        unknown = [op for op in ops if op not in OPERATIONS]
        if unknown:
            raise ConfigError(
                f"{where}[{pattern!r}]: unknown operation(s) {unknown}; "
                f"expected some of {sorted(OPERATIONS)}"
            )
    return {str(k): list(v) for k, v in capability.items()}


def _pattern_matches(pattern: str, channel: str) -> bool:
    return (
        pattern == "*"
        or pattern == channel
        or (pattern.endswith(":*") and channel.startswith(pattern[:-1]))
    )


def capability_allows(capability: Capability | None, channel: str, operation: str) -> bool:
    """True if `capability` grants `operation` on `channel` (same rules as the model's)."""
    if capability is None:
        return True
    for pattern, ops in capability.items():  # (a loop, not any(): on every PRESENCE frame)
        if _pattern_matches(pattern, channel) and ("*" in ops or operation in ops):
            return True
    return False


def capability_any(capability: Capability | None, channel: str) -> bool:
    """True if `capability` grants any operation at all on `channel` (enough to attach)."""
    if capability is None:
        return True
    return any(_pattern_matches(pattern, channel) and ops for pattern, ops in capability.items())


def parse_key(key: str) -> tuple[str, str]:
    """Split `name:secret`; raise `ConfigError` if it is not of that form."""
    if not isinstance(key, str) or ":" not in key:
        raise ConfigError(f"key {key!r}: expected 'appId.keyId:secret'")
    name, secret = key.split(":", 1)
    check_key_name(name)
    if not secret:
        raise ConfigError(f"key {name!r}: empty secret")
    return name, secret


def keys_from_json(raw: Any, source: str = "keys") -> dict[str, KeySpec]:
    """Keys from the keys-file object `{"appid.keyid": {"secret": ..., "capability": ...}}`."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{source}: expected a non-empty JSON object of key name -> key")
    keys: dict[str, KeySpec] = {}
    for name, entry in raw.items():
        check_key_name(name)
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"{source}[{name!r}]: expected an object with 'secret' and 'capability'"
            )
        secret = entry.get("secret")
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"{source}[{name!r}].secret: expected a non-empty string")
        capability = entry.get("capability", ALL_CAPABILITIES)
        keys[name] = KeySpec(secret, check_capability(capability, f"{source}[{name!r}].capability"))
    return keys


def load_keys_file(path: str | Path) -> dict[str, KeySpec]:
    """Read a keys file (JSON). Raises `ConfigError` naming the file and the bad entry."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read keys file ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"{p}: not valid JSON ({exc})") from None
    return keys_from_json(raw, str(p))


def new_token() -> str:
    """A fresh opaque token string."""
    return "tok-" + secrets.token_urlsafe(18)


def key_strings(keys: Mapping[str, KeySpec], *, secrets_too: bool = False) -> Iterable[str]:
    """Every key for printing where the server listens: its name, or `name:secret` when
    `secrets_too` (`serve --show-keys`)."""
    return (f"{name}:{spec.secret}" if secrets_too else name for name, spec in keys.items())


def capability_within(requested: Capability, held: Capability) -> bool:
    """True if every operation `requested` grants on a pattern is granted by `held` on that
    pattern (a token's capability may narrow its key's, never widen it)."""

    def covers(pattern: str, op: str) -> bool:
        return any(
            (
                key_pattern == "*"
                or key_pattern == pattern
                or (key_pattern.endswith(":*") and pattern.startswith(key_pattern[:-1]))
            )
            and ("*" in ops or op in ops)
            for key_pattern, ops in held.items()
        )

    return all(covers(pattern, op) for pattern, ops in requested.items() for op in ops)


def capability_grants(capability: Capability | None, channel: str) -> frozenset[str]:
    """The channel operations `capability` grants on `channel` (`*` expanded)."""
    if capability is None:
        return OPERATIONS - {"*"}
    out: set[str] = set()
    for pattern, ops in capability.items():
        if _pattern_matches(pattern, channel):
            out.update(OPERATIONS - {"*"} if "*" in ops else ops)
    return frozenset(out)
