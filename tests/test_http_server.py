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

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


class _Counting(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport


async def _pair() -> tuple[asyncio.Transport, _Recorder, asyncio.Server]:
    loop = asyncio.get_running_loop()
    reader = _Recorder()
    server = await loop.create_server(lambda: reader, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(_Counting, "127.0.0.1", port)
    await asyncio.sleep(0.05)
    return transport, reader, server


def test_writes_in_one_turn_leave_as_one_send_in_order() -> None:
    async def run() -> None:
        transport, reader, server = await _pair()
        sends: list[bytes] = []
        real_write = transport.write

        def counted(data: bytes | bytearray | memoryview) -> None:
            sends.append(bytes(data))
            real_write(data)

        transport.write = counted  # type: ignore[method-assign]  # count the real transport's sends
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
