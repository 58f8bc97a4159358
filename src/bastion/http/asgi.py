"""Raw ASGI helpers: the data plane answers without a framework request object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bastion.errors import RequestAborted

__all__ = ["Receive", "Scope", "Send", "TrackedSend", "header", "read_body", "route_template", "send_bytes"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a header (names are lowercase in ASGI)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class BodyTooLarge(Exception):
    pass


# A callable the HTTP server calls if the client's connection is lost before the response ends,
# kept in the request's `scope["state"]` (shared by every copy of the scope): see
# `bastion.http.server.CoalescingHttpToolsProtocol.connection_lost`.
ON_DISCONNECT = "bastion.on_disconnect"


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than `limit` bytes (declared or streamed)."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestAborted(f"the client closed the connection after {size} bytes of its request body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(headers or ())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class TrackedSend:
    """A `send` that remembers how far the response got, for code that must end a response it may
    or may not have begun (a call cancelled before or after its event stream started)."""

    __slots__ = ("_send", "ended", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.ended = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.ended = True
        await self._send(message)

    async def finish(self, status: int, body: bytes) -> None:
        """Answer with `body` if nothing was sent yet; else end the body already begun (if open)."""
        if not self.started:
            await send_bytes(self, status, body)
        elif not self.ended:
            await self({"type": "http.response.body", "body": b"", "more_body": False})


def route_template(scope: Scope) -> str:
    """The request path with each path parameter's value put back as `{name}` (`/api/origins/{origin_id}`):
    what groups requests of one route, without the ids. The raw path before routing has matched."""
    params = scope.get("path_params") or {}
    if not params:
        return str(scope["path"])
    names = {str(value): name for name, value in params.items()}
    return "/".join(f"{{{names[part]}}}" if part in names else part for part in str(scope["path"]).split("/"))
