"""REST presence endpoints of the reference server (RSP3, RSP4), on the realtime server's port.

- `GET /time` -> `[ms]` (no auth).
- `POST /keys/{keyName}/requestToken` (RSA8, Basic auth with that key) -> TokenDetails
  (`token`, `keyName`, `issued`, `expires`, `capability` JSON text, `clientId`) for the
  TokenParams of the body (JSON, or MessagePack with `Content-Type: application/x-msgpack`:
  `capability` JSON text narrowing the key's, `clientId`, `ttl`).
- `GET /channels/{name}/presence?limit&clientId&connectionId` -> the members as wire
  PresenceMessages (numeric actions), paginated by `limit` (default 100, at most 1000).
- `GET /channels/{name}/presence/history?start&end&limit&direction` -> the channel's presence
  events (RSP4b: start/end inclusive ms, direction backwards by default).

Pages link to each other with `Link` headers of exactly the form ably-js parses
(`<./NAME?query>; rel="next"`, see `docs/protocol.md`), with `first` and `current` as well; no
`next` link means the last page.

Bodies are JSON, or MessagePack when the request's `Accept` names `application/x-msgpack` (as
the SDKs ask with `useBinaryProtocol`; binary member data then travels as `bin`, see
`codec.py`); error bodies are always JSON, which both SDKs read by their Content-Type.

Auth (`auth.Authenticator.authenticate_request`): `Authorization: Basic base64(name:secret)` or
`Bearer base64(token)` (a token from `PresenceServer.issue_token`), or a `key` / `access_token`
query parameter. Errors are JSON `{"error": {"code", "statusCode", "message"}}` with the
matching HTTP status.

The handlers get what they use, nothing more: the model (read only), the authenticator and the
server's clock (`add_routes`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from presence_conformance.reference_impl import errors
from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.model import (
    MAX_HISTORY_LIMIT,
    PresenceModel,
    validate_history_params,
)
from presence_conformance.reference_impl.server.auth import (
    MAX_TOKEN_REQUEST,
    Authenticator,
    require_rest_operation,
)
from presence_conformance.reference_impl.server.codec import (
    MSGPACK_MIME,
    DecodeError,
    decode_json,
    decode_msgpack,
    encode,
    items_for,
)
from presence_conformance.reference_impl.server.wire import (
    INTERNAL_ERROR,
    INVALID_CHANNEL_NAME,
    INVALID_CREDENTIALS,
    FrameError,
    dumps,
    error_info,
    short,
    wire_presence,
)

log = logging.getLogger(__name__)

_INT = re.compile(r"^-?[0-9]{1,18}$")
_HTTP_CODES = {404: errors.NOT_FOUND, 405: 40500, 401: INVALID_CREDENTIALS}


def error_response(code: int, message: str, status: int | None = None) -> web.Response:
    """A JSON error body `{"error": ErrorInfo}` with the matching HTTP status."""
    info = error_info(code, message, status)
    # Exactly `application/json` (no charset): ably-js only parses error bodies of that type.
    return web.Response(
        status=info["statusCode"],
        body=dumps({"error": info}).encode(),
        headers={
            "Content-Type": "application/json",
            "X-Ably-ErrorCode": str(info["code"]),
            "X-Ably-ErrorMessage": info["message"][:200].encode("ascii", "replace").decode(),
        },
    )


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every refusal as an Ably error body; nothing escapes as a bare HTML page or a crash."""
    try:
        return await handler(request)
    except FrameError as exc:
        return error_response(exc.code, exc.message, exc.status_code)
    except PresenceError as exc:
        return error_response(exc.code, exc.message, exc.status_code)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, exc.status * 100)
        return error_response(code, f"{request.method} {request.path}: {exc.reason}", exc.status)
    except Exception as exc:
        log.exception("REST %s %s failed", request.method, request.path)
        return error_response(INTERNAL_ERROR, f"internal error ({type(exc).__name__})", 500)


def add_routes(
    app: web.Application,
    *,
    model: PresenceModel,
    auth: Authenticator,
    now: Callable[[], int],
    max_channel_name_length: int = 1024,
    history_page: Callable[[int], int] | None = None,
) -> None:
    """Register the REST routes on `app`: they read `model`, check credentials with `auth`
    and tell the time by `now` (ms since the epoch). Channel names are refused as the realtime
    side refuses them (40010 beyond `max_channel_name_length` characters). `history_page`
    (a server variant) gives the items a history page holds for a `limit`: at most `limit`
    (RSP4b3), the rest behind the `next` link."""

    def channel_of(request: web.Request) -> str:
        channel = request.match_info["channel"]
        if len(channel) > max_channel_name_length:
            raise FrameError(
                INVALID_CHANNEL_NAME,
                f"channel: name of {len(channel)} characters exceeds {max_channel_name_length}",
            )
        return channel

    async def request_token(request: web.Request) -> web.Response:
        key_name = request.match_info["key_name"]
        auth_key_name = auth.authenticate_key_request(request.headers)
        too_large = (request.content_length or 0) > MAX_TOKEN_REQUEST
        raw = b"" if too_large else await request.read()  # aiohttp bounds it (client_max_size)
        if too_large or len(raw) > MAX_TOKEN_REQUEST:
            raise FrameError(
                errors.MESSAGE_TOO_LARGE, f"requestToken: body above {MAX_TOKEN_REQUEST} bytes"
            )
        packed = request.content_type == MSGPACK_MIME
        try:
            if packed:
                body = decode_msgpack(raw) if raw else None
            else:
                body = decode_json(raw.decode("utf-8")) if raw.strip() else None
        except (DecodeError, UnicodeDecodeError):
            what = "MessagePack" if packed else "JSON"
            raise FrameError(errors.BAD_REQUEST, f"requestToken: body is not {what}") from None
        return _answer(request, auth.request_token(key_name, auth_key_name, body))

    async def get_time(request: web.Request) -> web.Response:
        return _answer(request, [now()])

    async def get_presence(request: web.Request) -> web.Response:
        channel = channel_of(request)
        capability = auth.authenticate_request(request.headers, request.query)
        require_rest_operation(capability, channel, ("subscribe", "presence"), "subscribe")
        query = request.query
        limit = _int_param(query, "limit")
        if limit is None:
            limit = 100
        elif not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise PresenceError(
                errors.INVALID_PARAMETER_VALUE,
                f"limit: expected an integer from 1 to {MAX_HISTORY_LIMIT}, got {limit}",
                "limit",
            )
        client_id = query.get("clientId")
        connection_id = query.get("connectionId")
        members = model.get(channel, client_id or None, connection_id or None)
        cursor = query.get("cursor")
        if cursor:
            members = [m for m in members if m.member_key > cursor]
        page = members[:limit]
        base: dict[str, Any] = {"limit": limit}
        if client_id:
            base["clientId"] = client_id
        if connection_id:
            base["connectionId"] = connection_id
        links = [
            _link("presence", base, "first"),
            _link("presence", {**base, "cursor": cursor} if cursor else base, "current"),
        ]
        if len(members) > limit:
            links.append(_link("presence", {**base, "cursor": page[-1].member_key}, "next"))
        return _answer(request, [wire_presence(m) for m in page], links)

    async def get_history(request: web.Request) -> web.Response:
        channel = channel_of(request)
        capability = auth.authenticate_request(request.headers, request.query)
        require_rest_operation(capability, channel, ("history",), "history")
        query = request.query
        start, end, limit = (_int_param(query, n) for n in ("start", "end", "limit"))
        direction = query.get("direction")
        start, end, limit, direction = validate_history_params(start, end, limit, direction)
        cursor = query.get("cursor")
        size = limit if history_page is None else history_page(limit)
        page = model.history(channel, start, end, size, direction, cursor or None)
        base: dict[str, Any] = {}
        if start is not None:
            base["start"] = start
        if end is not None:
            base["end"] = end
        base["limit"] = limit
        base["direction"] = direction
        links = [
            _link("history", base, "first"),
            _link("history", {**base, "cursor": cursor} if cursor else base, "current"),
        ]
        if page.next_cursor is not None:
            links.append(_link("history", {**base, "cursor": page.next_cursor}, "next"))
        return _answer(request, [wire_presence(m) for m in page.items], links)

    app.router.add_get("/time", get_time)
    app.router.add_post("/keys/{key_name}/requestToken", request_token)
    app.router.add_get("/channels/{channel:[^/]+}/presence/history", get_history)
    app.router.add_get("/channels/{channel:[^/]+}/presence", get_presence)


def _answer(request: web.Request, body: Any, links: list[str] | None = None) -> web.Response:
    """`body` (a list: presence items, or the time; or an object: TokenDetails) in the format
    the request accepts."""
    headers = {"Link": ", ".join(links)} if links else None
    fmt = "msgpack" if MSGPACK_MIME in request.headers.get("Accept", "") else "json"
    if isinstance(body, list):
        body = items_for(body, fmt)
    if fmt == "msgpack":
        return web.Response(body=encode(body, fmt), content_type=MSGPACK_MIME, headers=headers)
    return web.Response(
        body=encode(body, fmt), content_type="application/json", charset="utf-8", headers=headers
    )


def _link(name: str, params: dict[str, Any], rel: str) -> str:
    """`<./NAME?query>; rel="REL"`: the form ably-js requires (`^\\./(\\w+)\\?(.*)$`); the query
    is percent-encoded (no `+`, no `,`), which both SDKs decode."""
    query = urlencode({k: str(v) for k, v in params.items()}, quote_via=quote, safe="")
    return f'<./{name}?{query}>; rel="{rel}"'


def _int_param(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if not _INT.match(raw):
        raise PresenceError(
            errors.INVALID_PARAMETER_VALUE, f"{name}: expected an integer, got {short(raw)}", name
        )
    return int(raw)
