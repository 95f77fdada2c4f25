"""REST presence over the Ably HTTP API: history with `Link` pagination, get, time (RSP3, RSP4).

Requests carry `Authorization: Basic base64(key)` and `Accept: application/json`, or
`Accept: application/x-msgpack` with `wire_format="msgpack"` (as the SDKs ask with
`useBinaryProtocol`); a body is decoded by its Content-Type (JSON or MessagePack). Pages follow
the `Link: <./history?...>; rel="next"` header (resolved against the request URL, as both SDKs
do); no `next` link means the last page. An error response `{"error": {code, statusCode,
message}}` raises PresenceError; any other non-2xx answer, or a body that is not what the
protocol says, raises ProtocolViolation. Every request is bounded by `timeout`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any, Literal
from urllib.parse import quote, urljoin

import aiohttp
import msgpack
from presence_conformance.harness.ably_client.protocol import (
    OperationTimeout,
    ProtocolViolation,
    error_from_wire,
    presence_from_wire,
)
from presence_conformance.reference_impl.types import PresenceMessage
from yarl import URL

__all__ = ["PaginatedResult", "RestClient", "parse_links"]

_LINK = re.compile(r'^\s*<(.+)>;\s*rel="(\w+)"\s*$')


def parse_links(header: str | None) -> dict[str, str]:
    """`Link` header -> {rel: target} (the form ably-js parses: `<target>; rel="name"`)."""
    links: dict[str, str] = {}
    for part in (header or "").split(","):
        match = _LINK.match(part)
        if match:
            links[match.group(2)] = match.group(1)
    return links


class PaginatedResult:
    """One page of a REST listing (TG1): `items`, `has_next()`, `is_last()`, `next()`."""

    def __init__(
        self, client: RestClient, items: list[PresenceMessage], next_url: URL | None, url: URL
    ) -> None:
        self._client = client
        self.items = items
        self.url = url
        self.next_url = next_url

    def has_next(self) -> bool:
        return self.next_url is not None

    def is_last(self) -> bool:
        return self.next_url is None

    async def next(self) -> PaginatedResult | None:
        """The next page, or None after the last one."""
        if self.next_url is None:
            return None
        return await self._client._get_page(self.next_url)


class RestClient:
    """REST presence for one API key against `endpoint` ("host:port", plain http)."""

    def __init__(
        self,
        endpoint: str,
        key: str,
        *,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        wire_format: Literal["json", "msgpack"] = "json",
        token: str | None = None,
    ) -> None:
        """`key` authenticates with Basic auth; with `token` (an Ably token string) requests
        carry `Authorization: Bearer base64(token)` instead (the key still mints tokens)."""
        self.endpoint = endpoint
        self.key = key
        self.timeout = timeout
        self._session = session
        self._own_session = session is None
        basic = base64.b64encode(key.encode()).decode("ascii")
        self._basic = {
            "Authorization": f"Basic {basic}",
            "Accept": "application/x-msgpack" if wire_format == "msgpack" else "application/json",
            "X-Ably-Version": "5",
        }
        self._headers = dict(self._basic)
        if token:
            bearer = base64.b64encode(token.encode()).decode("ascii")
            self._headers["Authorization"] = f"Bearer {bearer}"

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _url(self, path: str, params: dict[str, Any]) -> URL:
        query = "&".join(
            f"{k}={quote(_param(v), safe='')}" for k, v in params.items() if v is not None
        )
        return URL(f"http://{self.endpoint}{path}" + (f"?{query}" if query else ""), encoded=True)

    def _channel_path(self, channel: str, tail: str) -> str:
        return f"/channels/{quote(channel, safe='')}/{tail}"

    async def presence_history(
        self,
        channel: str,
        start: Any = None,
        end: Any = None,
        limit: Any = None,
        direction: Any = None,
    ) -> PaginatedResult:
        """RSP4 / RTP12: `GET /channels/{name}/presence/history` (values passed as given)."""
        url = self._url(
            self._channel_path(channel, "presence/history"),
            {"start": start, "end": end, "limit": limit, "direction": direction},
        )
        return await self._get_page(url)

    async def presence_get(
        self,
        channel: str,
        limit: Any = None,
        client_id: str | None = None,
        connection_id: str | None = None,
    ) -> PaginatedResult:
        """RSP3: `GET /channels/{name}/presence`."""
        url = self._url(
            self._channel_path(channel, "presence"),
            {"limit": limit, "clientId": client_id, "connectionId": connection_id},
        )
        return await self._get_page(url)

    async def request_token(
        self, capability: dict[str, list[str]] | None = None, client_id: str | None = None
    ) -> dict[str, Any]:
        """RSA8: `POST /keys/{keyName}/requestToken` with TokenParams (TK2b `capability` JSON
        stringified, TK2c `clientId`), authenticated with the key; returns the TokenDetails
        (TD2-TD6: `token`, `expires`, `issued`, `capability`, `clientId`)."""
        key_name = self.key.split(":", 1)[0]
        params: dict[str, Any] = {"keyName": key_name}
        if capability is not None:
            params["capability"] = json.dumps(capability, separators=(",", ":"))
        if client_id is not None:
            params["clientId"] = client_id
        url = self._url(f"/keys/{quote(key_name, safe='')}/requestToken", {})
        body, _ = await self._request(
            url, method="POST", json_body=params, send_headers=self._basic
        )
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            raise ProtocolViolation(f"POST {url} answered {body!r}, expected TokenDetails")
        return body

    async def time(self) -> int:
        """`GET /time`: the server's clock in ms."""
        body, _ = await self._request(self._url("/time", {}))
        if not isinstance(body, list) or not body or not isinstance(body[0], int):
            raise ProtocolViolation(f"/time answered {body!r}, expected [milliseconds]")
        return body[0]

    async def _get_page(self, url: URL) -> PaginatedResult:
        body, headers = await self._request(url)
        if not isinstance(body, list):
            raise ProtocolViolation(f"GET {url} answered {type(body).__name__}, expected an array")
        items = [presence_from_wire(item) for item in body]
        target = parse_links(headers.get("Link")).get("next")
        # urljoin on the encoded text: yarl's join would decode a %-encoded channel name
        next_url = URL(urljoin(str(url), target), encoded=True) if target else None
        return PaginatedResult(self, items, next_url, url)

    async def _request(
        self,
        url: URL,
        *,
        method: str = "GET",
        json_body: Any = None,
        send_headers: dict[str, str] | None = None,
    ) -> tuple[Any, Any]:
        session = self._session
        if session is None:
            session = self._session = aiohttp.ClientSession()
        try:
            async with (
                asyncio.timeout(self.timeout),
                session.request(
                    method, url, headers=send_headers or self._headers, json=json_body
                ) as resp,
            ):
                raw = await resp.read()
                status = resp.status
                headers = resp.headers
        except TimeoutError:
            raise OperationTimeout(f"{method} {url}: no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"{method} {url} failed: {exc}") from exc
        packed = headers.get("Content-Type", "").startswith("application/x-msgpack")
        text = raw.decode("utf-8", "replace")
        try:
            body = (msgpack.unpackb(raw) if packed else json.loads(raw)) if raw else None
        except (ValueError, msgpack.UnpackException):
            body = None
            if 200 <= status < 300:
                what = "MessagePack" if packed else "JSON"
                raise ProtocolViolation(
                    f"{method} {url}: HTTP {status} with a body that is not {what}: {raw[:200]!r}"
                ) from None
        if status >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            if not isinstance(error, dict) or not isinstance(error.get("code"), int):
                raise ProtocolViolation(
                    f"GET {url}: HTTP {status} without an Ably error body: {text[:200]!r}"
                )
            err = error_from_wire(error, status * 100, f"HTTP {status}")
            if not isinstance(error.get("statusCode"), int):
                err.status_code = status
            raise err
        if not 200 <= status < 300:
            raise ProtocolViolation(f"GET {url}: unexpected HTTP {status}")
        return body, headers


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
