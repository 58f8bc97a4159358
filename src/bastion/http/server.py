"""The HTTP server process `bastion serve` runs: uvicorn, with the heap frozen once started, and
each connection's writes of one turn of the event loop sent together."""

from __future__ import annotations

import asyncio
import gc
import socket
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from bastion.http.asgi import ON_DISCONNECT

__all__ = ["CoalescingHttpToolsProtocol", "GatewayServer"]


class _Coalesced:
    """A connection's transport whose writes wait for the end of the event loop's turn, then go
    out as one: uvicorn writes a response's status line and headers, then its body, each with its
    own `send` system call (and, on loopback, its own wake-up of the reader). Everything else is
    the transport's own; closing sends what waits first. Order is kept: every write of the
    connection (the protocol's and each request's) goes through here. Once `FLUSH_AT` bytes wait,
    they go at once: a large body is not held in a second buffer, and backpressure (the
    transport's `pause_writing`, on which uvicorn waits before its next write) starts in the same
    turn, as without this wrapper."""

    __slots__ = ("_loop", "_parts", "_size", "_transport")

    FLUSH_AT = 64 * 1024  # above a response head and a typical tool result; one socket buffer's worth

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._parts:
            self._loop.call_soon(self._flush)
        self._parts.append(bytes(data))
        self._size += len(data)
        if self._size >= self.FLUSH_AT:
            self._flush()  # the turn's scheduled flush then finds nothing left

    def _flush(self) -> None:
        parts, self._parts, self._size = self._parts, [], 0
        if parts and not self._transport.is_closing():
            self._transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a `_Coalesced` transport: one `send` per response.
    Measured in `make bench` (see the README's performance section)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not `asyncio.Transport` subclasses; both have what is used here.
        super().connection_made(_Coalesced(cast(asyncio.Transport, transport), self.loop))  # type: ignore[arg-type]

    _running: RequestResponseCycle | None = None  # the request being answered (see `connection_lost`)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        """Also tell a request still being answered that its client has gone, if it asked to know
        (`ON_DISCONNECT`): a 2026-07-28 call is cancelled by its client closing the connection.

        uvicorn tells only its newest request (`self.cycle`). With HTTP/1.1 pipelining that is one
        queued behind the one being answered, which would run on unaware: both are told here."""
        cycles = [c for c in dict.fromkeys((self._running, self.cycle)) if c is not None]
        super().connection_lost(exc)
        for cycle in cycles:
            if cycle.response_complete:
                continue
            cycle.disconnected = True  # its `receive` says so (uvicorn marked only the newest)
            cycle.message_event.set()
            state = cycle.scope.get("state")
            on_disconnect = state.get(ON_DISCONNECT) if isinstance(state, dict) else None
            if on_disconnect is not None:
                on_disconnect()


class GatewayServer(uvicorn.Server):
    """Once started, everything the process built so far (modules, the app, the first snapshot)
    is moved out of the garbage collector's sight with `gc.freeze()`.

    Why: a full collection walked those ~250,000 long-lived objects every time. Under `make bench`
    load at c=32 that was three pauses of up to 250 ms in 12 s (0.7 s in all, measured with
    `gc.callbacks`); with the heap frozen, the same load saw full collections of 21 ms at most
    (54 ms in all). Frozen objects are still freed by reference counting once nothing holds them.
    """

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        gc.collect()
        gc.freeze()
