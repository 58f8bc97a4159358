"""Streamable HTTP origins: one keep-alive `httpx.AsyncClient` per origin, shared by all calls."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import orjson
import structlog
from anyio.abc import TaskGroup
from mcp.shared.inbound import NAME_BEARING_METHODS, encode_header_value

from bastion.catalog.snapshot import OriginSpec
from bastion.errors import UpstreamProtocolError, UpstreamTooLarge, UpstreamUnavailable
from bastion.mcp.upstream.base import NotificationSink, ProgressSink
from bastion.mcp.upstream.rpc import RpcCore, decode_message
from bastion.mcp.upstream.sse import iter_sse_data

__all__ = ["HttpOriginClient"]

log = structlog.get_logger(__name__)

_ACCEPT = "application/json, text/event-stream"


class _SessionLost(Exception):
    """The origin forgot our MCP session (HTTP 404): handshake again and retry once."""


class HttpOriginClient(RpcCore):
    def __init__(
        self,
        spec: OriginSpec,
        *,
        timeout: float,
        max_bytes: int,
        notify: NotificationSink,
        task_group: TaskGroup,
    ) -> None:
        super().__init__(spec, timeout=timeout, max_bytes=max_bytes, notify=notify)
        assert spec.url is not None
        self._url = spec.url
        self._tasks = task_group
        self._session_id: str | None = None
        self._get_stream: anyio.CancelScope | None = None
        self._http = self._new_http_client()

    def _new_http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=32),
            follow_redirects=False,  # a redirect could leave the approved origin
        )

    async def request(
        self, method: str, params: dict[str, Any] | None, *, progress: ProgressSink | None = None
    ) -> dict[str, Any]:
        try:
            return await super().request(method, params, progress=progress)
        except _SessionLost:
            log.info("origin_session_lost", origin=self.spec.name)
            self._ready, self._session_id = False, None
            return await super().request(method, params, progress=progress)

    async def _connect(self) -> None:
        self._session_id = None

    async def _disconnect(self) -> None:
        if self._get_stream is not None:
            self._get_stream.cancel()
        if self._session_id is not None:
            # End the origin's session politely (spec: DELETE with the session id).
            with anyio.move_on_after(2, shield=True):
                try:
                    await self._http.delete(self._url, headers=self._headers())
                except httpx.HTTPError:
                    pass
        await self._http.aclose()

    async def _initialize(self) -> None:
        await super()._initialize()
        if self._session_id is not None and self._get_stream is None:
            self._tasks.start_soon(self._listen, "GET", None)

    async def _reset_after_probe(self) -> None:
        # An origin that choked on the probe may have dropped its connections: start clean.
        self._session_id = None
        await self._http.aclose()
        self._http = self._new_http_client()

    async def _subscribe(self) -> None:
        if self._get_stream is None:
            self._tasks.start_soon(self._listen, "POST", self.listen_request())

    def _headers(self, message: dict[str, Any] | None = None) -> dict[str, str]:
        headers = {"accept": _ACCEPT, "content-type": "application/json"}
        if self._session_id is not None:
            headers["mcp-session-id"] = self._session_id
        if self.protocol_version is not None:
            headers["mcp-protocol-version"] = self.protocol_version
        if self.modern and message is not None and "method" in message:
            # 2026-07-28: routing headers mirror the body (the origin checks they agree).
            headers["mcp-method"] = message["method"]
            name_key = NAME_BEARING_METHODS.get(message["method"])
            name = (message.get("params") or {}).get(name_key) if name_key else None
            if isinstance(name, str):
                headers["mcp-name"] = encode_header_value(name)
        return headers

    async def _send_message(self, message: dict[str, Any]) -> None:
        try:
            response = await self._http.post(self._url, content=orjson.dumps(message), headers=self._headers(message))
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"origin {self.spec.name!r} is unreachable: {type(exc).__name__}") from exc
        await response.aclose()

    async def _send_request(self, message: dict[str, Any]) -> None:
        request = self._http.build_request("POST", self._url, content=orjson.dumps(message), headers=self._headers())
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise TimeoutError from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"origin {self.spec.name!r} is unreachable: {type(exc).__name__}") from exc
        try:
            await self._read_reply(message, response)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"origin {self.spec.name!r} dropped the reply: {type(exc).__name__}") from exc
        finally:
            await response.aclose()

    async def _read_reply(self, message: dict[str, Any], response: httpx.Response) -> None:
        if message["method"] == "initialize" and "mcp-session-id" in response.headers:
            self._session_id = response.headers["mcp-session-id"]
        if response.status_code == 404 and self._session_id is not None and message["method"] != "initialize":
            raise _SessionLost
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "text/event-stream" and response.status_code == 200:
            async for data in iter_sse_data(response.aiter_raw(), max_bytes=self.max_bytes, origin=self.spec.name):
                await self._route(decode_message(data, self.spec.name), reply_to=message["id"])
            return
        body = await self._read_bounded(response)
        if content_type == "application/json" and body:
            await self._route(decode_message(body, self.spec.name))  # a JSON-RPC error rides on any status
            return
        raise UpstreamUnavailable(
            f"origin {self.spec.name!r} answered HTTP {response.status_code} to {message['method']}"
        )

    async def _read_bounded(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise UpstreamTooLarge(f"origin {self.spec.name!r} sent more than {self.max_bytes} bytes in one reply")
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_raw():
            total += len(chunk)
            if total > self.max_bytes:
                raise UpstreamTooLarge(f"origin {self.spec.name!r} sent more than {self.max_bytes} bytes in one reply")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _listen(self, method: str, body: dict[str, Any] | None) -> None:
        """The origin's notification stream: GET in a session, `subscriptions/listen` in 2026-07-28."""
        with anyio.CancelScope() as scope:
            self._get_stream = scope
            try:
                # A GET stream accepts only SSE; a 2026-07-28 POST must accept JSON too.
                headers = {**self._headers(body), "accept": _ACCEPT if body else "text/event-stream"}
                content = orjson.dumps(body) if body is not None else None
                async with self._http.stream(
                    method, self._url, headers=headers, content=content, timeout=None
                ) as response:
                    if response.status_code != 200:
                        return  # 405: the origin offers no server stream
                    async for data in iter_sse_data(
                        response.aiter_raw(), max_bytes=self.max_bytes, origin=self.spec.name
                    ):
                        await self._route(decode_message(data, self.spec.name))
            except (httpx.HTTPError, UpstreamProtocolError) as exc:
                log.info("origin_stream_ended", origin=self.spec.name, error=type(exc).__name__)
            finally:
                self._get_stream = None
