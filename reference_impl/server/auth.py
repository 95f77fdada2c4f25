"""Authentication of the reference server: API keys, tokens, and what a credential may do.

- `Authenticator` holds the keys (from `ServerConfig.keys`, more with `add_key`) and the tokens
  it issued (`issue_token`). It checks the credentials of a WebSocket upgrade (`connect`: key or
  token, clientId, format, resume/recover) and of a REST request (`authenticate_request`:
  `Authorization: Basic`/`Bearer` or a `key` / `access_token` query parameter).
- `require_attach`, `require_operation` and `require_rest_operation` apply a credential's
  capability to a channel (config.py says how patterns match) and refuse with 40160.

Every refusal is a `FrameError` carrying the Ably error code: the realtime side sends it as
ERROR or NACK, the REST side as an error body.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.server.config import (
    Capability,
    ConfigError,
    KeySpec,
    TokenSpec,
    capability_allows,
    capability_within,
    check_capability,
    check_key_name,
    new_token,
)
from presence_conformance.reference_impl.server.wire import (
    INVALID_CREDENTIALS,
    UNABLE_TO_RECOVER,
    FrameError,
    short,
)

TOKEN_EXPIRED = 40142  # Ably: token expired
DEFAULT_TOKEN_TTL = 60 * 60 * 1000  # TK2a: 60 minutes
MAX_TOKEN_TTL = 24 * 60 * 60 * 1000
MAX_TOKENS = 100_000  # tokens kept at once; the oldest go first (expired ones before that)
MAX_TOKEN_REQUEST = 16384  # bytes of a token request body


@dataclass(frozen=True)
class ConnectGrant:
    """What an accepted WebSocket upgrade may do: its key, clientId and capability.

    `resume_error` is set when the client asked to resume or recover: the connection is still
    accepted (as a new one), and CONNECTED carries the error."""

    key_name: str
    client_id: str | None  # None: anonymous; "*": wildcard
    capability: Capability
    resume_error: FrameError | None = None
    resume_key: str | None = None  # the connectionKey of a `resume` request (RTN15b1)
    format: Literal["json", "msgpack"] = "json"  # the `format` query parameter (RTN2a)


class Authenticator:
    """The keys and tokens of one server, and the checks of credentials against them."""

    def __init__(self, keys: Mapping[str, KeySpec], now: Callable[[], int] | None = None) -> None:
        self._keys: dict[str, KeySpec] = dict(keys)
        self._tokens: dict[str, TokenSpec] = {}
        self._now = now or (lambda: 0)

    @property
    def default_key(self) -> str:
        """`name:secret` of the first key."""
        name, spec = next(iter(self._keys.items()))
        return f"{name}:{spec.secret}"

    def add_key(self, name: str, secret: str, capability: Capability | None = None) -> str:
        """Add (or replace) an API key; returns `name:secret`. Raises `ConfigError`."""
        check_key_name(name)
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"key {name!r}: empty secret")
        cap = check_capability(capability if capability is not None else {"*": ["*"]})
        self._keys[name] = KeySpec(secret, cap)
        return f"{name}:{secret}"

    def issue_token(
        self,
        key_name: str | None = None,
        client_id: str | None = None,
        capability: Capability | None = None,
    ) -> str:
        """An opaque token for `key_name` (default: the first key), with that key's capability
        unless `capability` narrows it. Raises `ConfigError` for an unknown key."""
        name = key_name or next(iter(self._keys))
        if name not in self._keys:
            raise ConfigError(f"key {name!r}: unknown key")
        cap = (
            check_capability(capability) if capability is not None else self._keys[name].capability
        )
        token = new_token()
        self._keep(token, TokenSpec(name, client_id, cap))
        return token

    def _keep(self, token: str, spec: TokenSpec) -> None:
        if len(self._tokens) >= MAX_TOKENS:
            now = self._now()
            for old in [t for t, s in self._tokens.items() if s.expires and s.expires <= now]:
                del self._tokens[old]
            while len(self._tokens) >= MAX_TOKENS:
                del self._tokens[next(iter(self._tokens))]
        self._tokens[token] = spec

    def request_token(self, key_name: str, auth_key_name: str, body: Any) -> dict[str, Any]:
        """`POST /keys/{keyName}/requestToken` (RSA8, TE/TK, TD): issue a token for `key_name`,
        authenticated as `auth_key_name`, from TokenParams in `body` (`capability`: JSON text
        that may narrow the key's, TK2b; `clientId`, TK2c; `ttl` ms, TK2a). Returns the
        TokenDetails (TD2-TD6). FrameError 40101 / 40160 / 40003 naming the bad part."""
        if auth_key_name != key_name:
            raise FrameError(
                INVALID_CREDENTIALS,
                f"requestToken: authenticated as key {auth_key_name!r}, not {short(key_name)}",
                status_code=401,
            )
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise FrameError(errors.BAD_REQUEST, "requestToken: expected a JSON object body")
        if body.get("keyName") not in (None, key_name):
            raise FrameError(
                errors.BAD_REQUEST,
                f"requestToken: keyName {short(body.get('keyName'))} is not {key_name!r}",
            )
        held = self._keys[key_name].capability
        raw = body.get("capability")
        if raw is None:
            capability = held
        else:
            if not isinstance(raw, str):
                raise FrameError(
                    errors.INVALID_PARAMETER_VALUE,
                    "capability: expected capability JSON stringified (TK2b)",
                )
            try:
                capability = check_capability(json.loads(raw))
            except (ValueError, RecursionError, ConfigError) as exc:
                raise FrameError(
                    errors.INVALID_PARAMETER_VALUE, f"capability: {short(str(exc))}"
                ) from None
            if not capability_within(capability, held):
                raise FrameError(
                    errors.CAPABILITY_DENIED,
                    f"capability: the requested capability exceeds key {key_name!r}'s",
                    status_code=401,
                )
        client_id = body.get("clientId")
        if client_id is not None and (not isinstance(client_id, str) or not client_id):
            raise FrameError(
                errors.INVALID_CLIENT_ID, f"clientId: invalid clientId {short(client_id)}"
            )
        ttl = body.get("ttl")
        if ttl is None:
            ttl = DEFAULT_TOKEN_TTL
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_TOKEN_TTL:
            raise FrameError(
                errors.INVALID_PARAMETER_VALUE,
                f"ttl: expected milliseconds from 1 to {MAX_TOKEN_TTL}, got {short(ttl)}",
            )
        issued = self._now()
        token = new_token()
        self._keep(token, TokenSpec(key_name, client_id, capability, issued + ttl))
        details: dict[str, Any] = {
            "token": token,
            "keyName": key_name,
            "issued": issued,
            "expires": issued + ttl,
            "capability": json.dumps(capability, separators=(",", ":")),
        }
        if client_id is not None:
            details["clientId"] = client_id
        return details

    def has_token(self, token: str) -> bool:
        """True if `token` was issued here."""
        return token in self._tokens

    def authenticate_key(self, key: str) -> tuple[str, Capability]:
        """`name:secret` -> (key name, capability); FrameError 40101 / 40400 otherwise."""
        if ":" not in key:
            raise FrameError(INVALID_CREDENTIALS, "key: expected 'appId.keyId:secret'")
        name, secret = key.split(":", 1)
        spec = self._keys.get(name)
        if spec is None:
            raise FrameError(errors.NOT_FOUND, f"key: unknown key name {short(name)}")
        if not secrets.compare_digest(secret.encode(), spec.secret.encode()):
            raise FrameError(INVALID_CREDENTIALS, f"key: wrong secret for key {name!r}")
        return name, spec.capability

    def authenticate_token(self, token: str, param: str) -> TokenSpec:
        """A token issued by `issue_token`; FrameError 40101 naming `param` otherwise."""
        spec = self._tokens.get(token)
        if spec is None or spec.key_name not in self._keys:
            raise FrameError(
                INVALID_CREDENTIALS,
                f"{param}: unknown token (the reference server only accepts tokens it issued: "
                "POST /keys/{keyName}/requestToken or PresenceServer.issue_token)",
            )
        if spec.expires is not None and spec.expires <= self._now():
            del self._tokens[token]
            raise FrameError(TOKEN_EXPIRED, f"{param}: token expired", status_code=401)
        return spec

    def connect(self, query: Mapping[str, str]) -> ConnectGrant:
        """Check the query of a WebSocket upgrade (format, clientId, key or token, resume);
        FrameError if the connection is refused."""
        fmt = query.get("format") or "json"
        if fmt not in ("json", "msgpack"):
            raise FrameError(
                errors.BAD_REQUEST,
                f"format: {short(fmt)} is not supported; the reference server speaks "
                "format=json (text frames) and format=msgpack (binary frames)",
            )
        client_id = query.get("clientId")
        if client_id is not None and not client_id:
            raise FrameError(errors.INVALID_CLIENT_ID, "clientId: empty clientId")
        key = query.get("key")
        token_param = next((p for p in ("accessToken", "access_token") if p in query), None)
        if key is not None:
            key_name, capability = self.authenticate_key(key)
        elif token_param is not None:
            spec = self.authenticate_token(query[token_param], token_param)
            key_name, capability = spec.key_name, spec.capability
            client_id = token_client_id(spec.client_id, client_id)
        else:
            raise FrameError(
                INVALID_CREDENTIALS,
                "no credentials: expected key=name:secret (or accessToken) in the query",
            )
        resume_error = None
        if query.get("recover"):
            resume_error = FrameError(
                UNABLE_TO_RECOVER,
                "recover: the reference server does not recover connections; this is a new "
                "connection",
            )
        # `resume` (RTN15b1) is judged by the realtime protocol, which knows the connections
        return ConnectGrant(
            key_name,
            client_id,
            capability,
            resume_error,
            query.get("resume") or None,
            "msgpack" if fmt == "msgpack" else "json",
        )

    def authenticate_key_request(self, headers: Mapping[str, str]) -> str:
        """The key name of a REST request authenticated with `Authorization: Basic` (the token
        endpoint takes a key, never a token); FrameError 40101 (401) otherwise."""
        scheme, _, value = headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "basic":
            raise FrameError(
                INVALID_CREDENTIALS,
                "requestToken: send the key as 'Authorization: Basic base64(key)'",
                status_code=401,
            )
        try:
            key = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise FrameError(
                INVALID_CREDENTIALS,
                "Authorization: Basic credentials are not base64 of 'appId.keyId:secret'",
                status_code=401,
            ) from None
        try:
            return self.authenticate_key(key)[0]
        except FrameError as exc:
            exc.status_code = 401
            raise

    def authenticate_request(
        self, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> Capability:
        """The capability of a REST request's credentials; FrameError 40101 (401) / 40400
        otherwise."""
        header = headers.get("Authorization")
        if header:
            scheme, _, value = header.strip().partition(" ")
            value = value.strip()
            if scheme.lower() == "basic":
                try:
                    key = base64.b64decode(value, validate=True).decode("utf-8")
                except (binascii.Error, ValueError):
                    raise FrameError(
                        INVALID_CREDENTIALS,
                        "Authorization: Basic credentials are not base64 of 'appId.keyId:secret'",
                        status_code=401,
                    ) from None
                return self.authenticate_key(key)[1]
            if scheme.lower() == "bearer":
                token = value
                try:
                    decoded: str | None = base64.b64decode(value, validate=True).decode("utf-8")
                except (binascii.Error, ValueError):
                    decoded = None
                if decoded is not None and self.has_token(decoded):
                    token = decoded
                return self.authenticate_token(token, "Authorization: Bearer").capability
            raise FrameError(
                INVALID_CREDENTIALS,
                f"Authorization: unsupported scheme {short(scheme)}; expected Basic or Bearer",
                status_code=401,
            )
        if "key" in query:
            return self.authenticate_key(query["key"])[1]
        for param in ("access_token", "accessToken"):
            if param in query:
                return self.authenticate_token(query[param], param).capability
        raise FrameError(
            INVALID_CREDENTIALS,
            "no credentials: send 'Authorization: Basic base64(key)' or 'Bearer base64(token)'",
            status_code=401,
        )


def token_client_id(token_client_id: str | None, url_client_id: str | None) -> str | None:
    """The identity of a connection made with a token (TK2c / TD6, RSA15a): a token with a
    clientId enforces it (a different `clientId=` in the URL is refused); a token without one is
    "prohibited from assuming a clientId in any operations", so any `clientId=` is refused; only
    a wildcard token (`*`) may be narrowed to a clientId by the URL (RSA15b)."""
    if token_client_id == "*":
        return url_client_id if url_client_id is not None else "*"
    if url_client_id is not None and url_client_id != token_client_id:
        held = "no clientId" if token_client_id is None else f"clientId {token_client_id!r}"
        raise FrameError(
            errors.INVALID_CLIENT_ID,
            f"clientId: {short(url_client_id)} does not match the token, which has {held} "
            "(TK2c, RSA15a)",
        )
    return token_client_id


def require_attach(capability: Capability, key_name: str, channel: str) -> None:
    """A connection may attach to `channel` only with `subscribe` or `presence` there (Ably's
    capability model: `subscribe` receives messages and presence, `presence` registers it;
    `publish` or `history` alone give no reason to attach and must not reveal the members)."""
    if not (
        capability_allows(capability, channel, "subscribe")
        or capability_allows(capability, channel, "presence")
    ):
        raise FrameError(
            errors.CAPABILITY_DENIED,
            f"capability: key {key_name!r} grants neither subscribe nor presence on channel "
            f"{short(channel)}",
            channel=channel,
        )


def require_operation(
    capability: Capability, key_name: str, channel: str, operation: str, msg_serial: int
) -> None:
    """A connection's frame (`msg_serial`) needs `operation` (`presence`, `publish`) on
    `channel`; refused with a NACK otherwise."""
    if not capability_allows(capability, channel, operation):
        raise FrameError(
            errors.CAPABILITY_DENIED,
            f"capability: key {key_name!r} has no {operation} capability on channel {channel!r}",
            msg_serial=msg_serial,
        )


def require_rest_operation(
    capability: Capability, channel: str, operations: Sequence[str], named: str
) -> None:
    """A REST request needs one of `operations` on `channel`; refused (401) naming `named`."""
    if not any(capability_allows(capability, channel, op) for op in operations):
        raise FrameError(
            errors.CAPABILITY_DENIED,
            f"capability: no {named} capability on channel {channel!r}",
            status_code=401,
        )
