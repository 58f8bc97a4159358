"""`bastion serve`'s connection transport: a turn's writes leave as one, in order, and nothing is
lost when the connection closes right after a write."""

from __future__ import annotations

import asyncio

from bastion.http.server import _Coalesced


class _Recorder(asyncio.Protocol):
    """The reading end: every chunk `data_received` got, as it got it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = asyncio.Event()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


class _Counting(asyncio.Protocol):
    def __init__(self) -> None:
        self.paused = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def pause_writing(self) -> None:
        self.paused += 1


async def _pair() -> tuple[asyncio.Transport, _Recorder, asyncio.Server]:
    transport, _, reader, server = await _connected()
    return transport, reader, server


async def _connected() -> tuple[asyncio.Transport, _Counting, _Recorder, asyncio.Server]:
    loop = asyncio.get_running_loop()
    reader = _Recorder()
    server = await loop.create_server(lambda: reader, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, writer = await loop.create_connection(_Counting, "127.0.0.1", port)
    await asyncio.sleep(0.05)
    return transport, writer, reader, server


def _sends_of(transport: asyncio.Transport) -> list[bytes]:
    """What the real transport is asked to send, write by write, from now on."""
    sends: list[bytes] = []
    real_write = transport.write

    def counted(data: bytes | bytearray | memoryview) -> None:
        sends.append(bytes(data))
        real_write(data)

    transport.write = counted  # type: ignore[method-assign]  # count the real transport's sends
    return sends


def test_writes_in_one_turn_leave_as_one_send_in_order() -> None:
    async def run() -> None:
        transport, reader, server = await _pair()
        sends = _sends_of(transport)
        coalesced = _Coalesced(transport, asyncio.get_running_loop())
        coalesced.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        coalesced.write(memoryview(b"hello"))
        assert sends == []  # nothing until the turn ends
        await asyncio.sleep(0.05)
        assert sends == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"]
        coalesced.write(b"next")
        await asyncio.sleep(0.05)
        assert sends[1:] == [b"next"]
        assert b"".join(reader.chunks) == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhellonext"
        transport.close()
        server.close()

    asyncio.run(run())


def test_closing_right_after_a_write_sends_it_first() -> None:
    async def run() -> None:
        transport, reader, server = await _pair()
        coalesced = _Coalesced(transport, asyncio.get_running_loop())
        coalesced.write(b"bye")
        coalesced.close()
        assert coalesced.is_closing()  # the transport's own, through the wrapper
        await asyncio.wait_for(reader.closed.wait(), 5)
        assert b"".join(reader.chunks) == b"bye"
        server.close()

    asyncio.run(run())


def test_a_large_write_leaves_in_its_own_turn_and_backpressure_starts_there() -> None:
    async def run() -> None:
        transport, writer, reader, server = await _connected()
        sends = _sends_of(transport)
        coalesced = _Coalesced(transport, asyncio.get_running_loop())
        coalesced.write(b"head")
        assert sends == []  # small writes wait for the end of the turn
        coalesced.write(b"x" * _Coalesced.FLUSH_AT)
        assert sends == [b"head" + b"x" * _Coalesced.FLUSH_AT]  # gone at once, with what waited before it
        # A slow reader (nothing read for now): 16 MiB written in one turn fill the socket's buffers
        # and the transport's own, which pauses the protocol before the turn ends.
        assert isinstance(reader.transport, asyncio.ReadTransport)
        reader.transport.pause_reading()
        for _ in range(256):
            coalesced.write(b"y" * _Coalesced.FLUSH_AT)
        assert writer.paused >= 1
        transport.abort()
        reader.transport.close()
        server.close()
        await server.wait_closed()

    asyncio.run(run())
