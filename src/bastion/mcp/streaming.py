"""Server-Sent Event replies: a request answered on a stream, and the session's GET stream."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as mt
import orjson
import structlog

from bastion.errors import BastionError
from bastion.http.asgi import Receive, Send
from bastion.identity.principal import Principal
from bastion.mcp.jsonrpc import error_message, result_message
from bastion.mcp.methods import Call, Methods
from bastion.mcp.sessions import Session

__all__ = ["event_stream_only", "send_event", "serve_event_stream", "serve_streaming", "sse_event"]

log = structlog.get_logger(__name__)

_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform")]
_KEEPALIVE_SECONDS = 15.0
_ZERO_WEIGHT = re.compile(r"q\s*=\s*0(\.0{0,3})?", re.IGNORECASE)  # RFC 9110 §12.4.2: a weight of zero


def sse_event(data: bytes) -> bytes:
    return b"event: message\r\ndata: " + data + b"\r\n\r\n"


def event_stream_only(accept: str | None) -> bool:
    """The client takes an event stream and no JSON (`Accept: text/event-stream` alone, as some
    clients and proxies send): its replies go as one event each, not as JSON it said it cannot read.
    Media types with `q=0` are refused ones (RFC 9110 §12.5.1); no header takes anything."""
    # Hand-written: no dependency here reads Accept's weights (the SDK's own check ignores them).
    if not accept:
        return False
    taken = set()
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if not any(_ZERO_WEIGHT.fullmatch(param) for param in params):
            taken.add(media.lower())
    return "text/event-stream" in taken and not taken & {"application/json", "application/*", "*/*"}


async def send_event(send: Send, message: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A reply as an event stream of one event (see `event_stream_only`)."""
    await send({"type": "http.response.start", "status": 200, "headers": [*_SSE_HEADERS, *headers]})
    await send({"type": "http.response.body", "body": sse_event(message), "more_body": False})


async def serve_streaming(
    methods: Methods,
    call: Call,
    request: mt.JSONRPCRequest,
    receive: Receive,
    send: Send,
    *,
    client_token: Any | None,
    session: Session | None,
    session_headers: list[tuple[bytes, bytes]],
) -> None:
    """Answer on an event stream: the origin's progress (under the client's own token) and, in a
    handshake-era session, Bastion's own requests to the client; then the reply."""
    await send({"type": "http.response.start", "status": 200, "headers": [*_SSE_HEADERS, *session_headers]})

    async def emit(message: bytes) -> None:
        await send({"type": "http.response.body", "body": sse_event(message), "more_body": True})

    async def relay(method: str, params: dict[str, Any]) -> None:
        if method == "notifications/progress":
            params = {**params, "progressToken": client_token}
        await emit(orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params}))

    async def ask(method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert session is not None
        return await session.ask(method, params, emit)

    streaming = dataclasses.replace(
        call,
        progress=relay if client_token is not None else None,
        ask=ask if session is not None and session.can_elicit else None,
    )
    async with anyio.create_task_group() as tasks:
        if call.modern:
            # 2026-07-28: closing the response stream is how a client cancels.
            tasks.start_soon(_cancel_on_disconnect, receive, tasks.cancel_scope)
        try:
            final = result_message(request.id, await methods.dispatch(streaming, request.method, request.params or {}))
        except BastionError as error:
            final = error_message(request.id, error)
        except Exception:  # the stream has begun: it still ends with an answer, not a cut connection
            log.exception("mcp_stream_call_failed", method=request.method)
            final = error_message(request.id, BastionError("Bastion failed to answer this request"))
        await send({"type": "http.response.body", "body": sse_event(final), "more_body": False})
        tasks.cancel_scope.cancel()


async def serve_event_stream(
    session: Session,
    receive: Receive,
    send: Send,
    principal: Principal,
    confirm: Callable[[], Awaitable[None]],
    *,
    first: bytes | None = None,
    announce_session: bool = True,
) -> None:
    """A notification stream (GET, or 2026-07-28 listen) until the session ends, the client leaves,
    or the credential that opened it runs out: its token or the session expires, or an OAuth token
    is revoked (`ChangeNotifier`; an API token's revocation ends the session). A client that still
    may reads on by opening a new stream.

    `confirm` runs once the stream is registered (where a revocation from then on finds it) and
    before it is answered; it raises to refuse the stream, for a change since the request's check."""
    inbox = session.open_stream(principal.token_id if principal.client_id is not None else None)
    try:
        await confirm()
    except BaseException:
        inbox.close()
        session.close_stream()
        raise
    until = min(principal.expires_at, session.expires_at)
    headers = [*_SSE_HEADERS, (b"mcp-session-id", session.id.encode())] if announce_session else _SSE_HEADERS
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if first is not None:
        await send({"type": "http.response.body", "body": sse_event(first), "more_body": True})
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_cancel_on_disconnect, receive, tasks.cancel_scope)
        with inbox:
            while (left := until - time.time()) > 0:
                with anyio.move_on_after(min(_KEEPALIVE_SECONDS, left)):
                    try:
                        message = await inbox.receive()
                    except anyio.EndOfStream:
                        break
                    await send({"type": "http.response.body", "body": sse_event(message), "more_body": True})
                    continue
                if until > time.time():
                    await send({"type": "http.response.body", "body": b": keepalive\r\n\r\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        tasks.cancel_scope.cancel()


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
