"""The HTTP control endpoint of `presence-conformance serve --control`: `server:` steps for a
separately run reference server (`ably-wire` with `endpoint=` and `control_token=`).

Two routes, POST with a JSON body, each refused with 401 unless the request carries
`Authorization: Bearer <token>` with the token given on the command line (`--control TOKEN`)
or in `PRESENCE_CONFORMANCE_CONTROL_TOKEN` (compared in constant time):

- `/control/command`: one command of `control.py` -> `{"frames": [...]}` (400 with
  `{"error": ...}` when it cannot run);
- `/control/sent`: `{"connection": ID, "channel": NAME}` -> `{"frames": [...]}`, the channel
  frames the server sent to that connection.

Binary data, in commands and frames alike, travels as `{"$bytes": BASE64}` (`to_json`,
`from_json`, which the harness's `HttpControl` uses too). The control can make any client see
anything on any channel, which is why it is off unless asked for and never unauthenticated.
"""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any

from aiohttp import web
from presence_conformance.reference_impl.server.control import CommandError, ServerControl

__all__ = ["CONTROL_TOKEN_ENV", "MIN_TOKEN_LENGTH", "add_control_routes", "from_json", "to_json"]

CONTROL_TOKEN_ENV = "PRESENCE_CONFORMANCE_CONTROL_TOKEN"
MIN_TOKEN_LENGTH = 16


def to_json(value: Any) -> Any:
    """`value` with binary as `{"$bytes": BASE64}`, ready for JSON."""
    if isinstance(value, bytes | bytearray):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """The inverse of `to_json`: `{"$bytes": BASE64}` -> bytes."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            return base64.b64decode(value["$bytes"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def add_control_routes(app: web.Application, control: ServerControl, token: str) -> None:
    """Add the two control routes to `app`, guarded by `token` (at least MIN_TOKEN_LENGTH)."""
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"control token: at least {MIN_TOKEN_LENGTH} characters")
    expected = f"Bearer {token}".encode()

    def _refuse(request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response(
                {"error": "control: missing or wrong bearer token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="presence-conformance control"'},
            )
        return None

    async def _body(request: web.Request) -> Any:
        try:
            return from_json(json.loads(await request.text()))
        except ValueError:
            raise CommandError("body: not JSON") from None

    async def command(request: web.Request) -> web.Response:
        refused = _refuse(request)
        if refused is not None:
            return refused
        try:
            frames = control.run(await _body(request))
        except CommandError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"frames": to_json(frames)})

    async def sent(request: web.Request) -> web.Response:
        refused = _refuse(request)
        if refused is not None:
            return refused
        try:
            body = await _body(request)
        except CommandError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("connection"), str):
            return web.json_response({"error": "sent: {connection, channel} expected"}, status=400)
        channel = body.get("channel")
        frames = control.sent_frames(
            body["connection"], channel if isinstance(channel, str) else None
        )
        return web.json_response({"frames": to_json(frames)})

    app.router.add_post("/control/command", command)
    app.router.add_post("/control/sent", sent)
