"""The lean HTTP/1.1 client origin calls go through, against scripted servers on loopback."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bastion.net.egress import EgressPolicy, EgressRefused
from bastion.net.http1 import Http1Error, Http1InvalidRequest, Http1Pool, Http1TooLarge, Http1Unreachable, _failure
from tests.harness import free_port
from tests.tls import make_local_ca

pytestmark = pytest.mark.anyio

LOOPBACK = EgressPolicy(allow_cidrs=("127.0.0.0/8",))
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the client is asyncio's (Bastion runs on uvloop)


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


def _reply(body: bytes, *, status: str = "200 OK", extra: bytes = b"") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n".encode()
    return head + extra + b"\r\n" + body


@asynccontextmanager
async def _server(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, list[int]]]:
    """A server on a free loopback port; yields its base URL and the list of connections it accepted."""
    accepted: list[int] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted) + 1)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    port = free_port()
    server = await asyncio.start_server(on_connection, "127.0.0.1", port, ssl=ssl_context)
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://{'localhost' if ssl_context else '127.0.0.1'}:{port}/mcp", accepted
    finally:
        server.close()
        await server.wait_closed()


async def _echo_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        _, body = await _read_request(reader)
        writer.write(_reply(b'{"got":' + body + b"}"))
        await writer.drain()


async def test_requests_reuse_one_kept_alive_connection_and_send_what_was_asked() -> None:
    seen: list[bytes] = []

    async def recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, body = await _read_request(reader)
            seen.append(head)
            writer.write(_reply(b'{"got":' + body + b"}"))
            await writer.drain()

    async with _server(recording) as (url, accepted):
        pool = Http1Pool(url, LOOPBACK)
        for n in range(5):
            async with await pool.request("POST", {"x-test": "yes"}, str(n).encode()) as response:
                assert response.status == 200 and response.content_type == "application/json"
                assert await response.read(1000) == b'{"got":%d}' % n
        await pool.aclose()
    assert accepted == [1]  # one connection for all five
    first = seen[0].decode()
    assert first.startswith("POST /mcp HTTP/1.1\r\n") and f"host: 127.0.0.1:{url.split(':')[2].split('/')[0]}" in first
    assert "x-test: yes" in first and "content-length: 1" in first


async def test_concurrent_requests_get_connections_of_their_own() -> None:
    async with _server(_echo_forever) as (url, accepted):
        pool = Http1Pool(url, LOOPBACK)

        async def one(n: int) -> bytes:
            async with await pool.request("POST", {}, str(n).encode()) as response:
                return await response.read(1000)

        replies = await asyncio.gather(*(one(n) for n in range(8)))
        assert replies == [b'{"got":%d}' % n for n in range(8)]
        await pool.aclose()
    assert 2 <= len(accepted) <= 8


async def test_chunked_and_close_delimited_bodies_are_read_whole_and_streamed_as_they_come() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (b"data: one\n\n", b"data: two\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await _echo_forever(reader, writer)  # and the connection stays usable

    async with _server(chunked) as (url, accepted):
        pool = Http1Pool(url, LOOPBACK)
        async with await pool.request("POST", {}, b"{}") as response:
            assert response.content_type == "text/event-stream"
            assert [chunk async for chunk in response.chunks()] == [b"data: one\n\n", b"data: two\n\n"]
        async with await pool.request("POST", {}, b"1") as response:
            assert await response.read(100) == b'{"got":1}'
        await pool.aclose()
    assert accepted == [1]

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"a":')
        await writer.drain()
        writer.write(b"1}")
        await writer.drain()

    async with _server(until_close) as (url, accepted):
        pool = Http1Pool(url, LOOPBACK)
        async with await pool.request("POST", {}, b"{}") as response:
            assert await response.read(100) == b'{"a":1}'
        async with await pool.request("POST", {}, b"{}") as response:  # not reused: it was closed
            assert await response.read(100) == b'{"a":1}'
        await pool.aclose()
    assert accepted == [1, 2]


async def test_a_reply_larger_than_allowed_is_refused_and_its_connection_dropped() -> None:
    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
            for _ in range(4):
                writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async with _server(big) as (url, accepted):
        pool = Http1Pool(url, LOOPBACK)
        for _ in range(2):
            with pytest.raises(Http1TooLarge, match="larger than 2000 bytes"):
                async with await pool.request("POST", {}, b"{}") as response:
                    await response.read(2000)
        await pool.aclose()
    assert accepted == [1, 2]  # the cut-short reply's connection was not reused

    async def declared(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_reply(b"y" * 5000))
        await writer.drain()

    async with _server(declared) as (url, _):
        pool = Http1Pool(url, LOOPBACK)
        with pytest.raises(Http1TooLarge):
            async with await pool.request("POST", {}, b"{}") as response:
                await response.read(2000)
        await pool.aclose()


async def test_a_malformed_reply_and_a_reply_cut_short_are_errors_not_hangs() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"this is not HTTP\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with _server(garbage) as (url, _):
        pool = Http1Pool(url, LOOPBACK)
        with pytest.raises(Http1Error, match="malformed HTTP reply"):
            await asyncio.wait_for(pool.request("POST", {}, b"{}"), 5)
        await pool.aclose()

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a":')
        await writer.drain()

    async with _server(cut) as (url, _):
        pool = Http1Pool(url, LOOPBACK)
        with pytest.raises(Http1Unreachable, match="before its reply was complete"):
            async with await pool.request("POST", {}, b"{}") as response:
                await asyncio.wait_for(response.read(1000), 5)
        await pool.aclose()


async def test_a_header_line_that_never_ends_is_refused_at_the_head_bound_not_read_on() -> None:
    """httptools holds an unfinished header line whole: without a count of its own, an origin could
    make Bastion hold what it sends for as long as the call's timeout lets it send."""
    sent: list[int] = []

    async def endless_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nx-long: ")
        for _ in range(1024):  # up to 16 MiB, never a line end
            writer.write(b"a" * 16384)
            sent.append(1)
            await writer.drain()

    async with _server(endless_header) as (url, _):
        pool = Http1Pool(url, LOOPBACK)
        with pytest.raises(Http1Error, match="head is too large"):
            await asyncio.wait_for(pool.request("POST", {}, b"{}"), 10)
        await pool.aclose()
    assert len(sent) < 1024  # the connection was dropped: the origin could not send it all


async def test_a_kept_connection_the_origin_closed_is_replaced_without_failing_the_request() -> None:
    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await _read_request(reader)
        writer.write(_reply(b'{"got":' + body + b"}"))  # keep-alive announced, then closed when idle
        await writer.drain()

    async with _server(one_per_connection) as (url, accepted):
        pool = Http1Pool(url, LOOPBACK)
        for n in range(3):
            async with await pool.request("POST", {}, str(n).encode()) as response:
                assert await response.read(100) == b'{"got":%d}' % n
            await asyncio.sleep(0.05)  # the server's close reaches the kept connection
        await pool.aclose()
    assert accepted == [1, 2, 3]


@pytest.mark.parametrize("replay", [True, False])
async def test_a_request_the_origin_took_then_closed_on_is_sent_again_only_when_replayable(replay: bool) -> None:
    """The origin reads the second request on a kept connection and closes it without a word (it
    crashed, say): Bastion cannot tell that from an idle close, so only a replayable request is
    sent again; one that must not run twice fails instead (RFC 9110 §9.2.2)."""
    seen: list[bytes] = []

    async def answers_once_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await _read_request(reader)
        seen.append(body)
        writer.write(_reply(b'{"got":' + body + b"}"))
        await writer.drain()
        _, body = await _read_request(reader)
        seen.append(body)  # taken, then the connection ends with no answer

    async with _server(answers_once_per_connection) as (url, accepted):
        pool = Http1Pool(url, LOOPBACK)
        async with await pool.request("POST", {}, b"1") as response:
            assert await response.read(100) == b'{"got":1}'
        if replay:
            async with await pool.request("POST", {}, b"2", replay_stale=True) as response:
                assert await response.read(100) == b'{"got":2}'
            assert seen == [b"1", b"2", b"2"] and accepted == [1, 2]
        else:
            with pytest.raises(Http1Unreachable):
                await pool.request("POST", {}, b"2", replay_stale=False)
            assert seen == [b"1", b"2"] and accepted == [1]
        await pool.aclose()


async def test_unreachable_refused_and_malformed_requests_fail_before_anything_is_sent() -> None:
    pool = Http1Pool(f"http://127.0.0.1:{free_port()}/mcp", LOOPBACK)
    with pytest.raises(Http1Unreachable, match="cannot connect: the connection was refused"):
        await pool.request("POST", {}, b"{}")

    guarded = Http1Pool(f"http://127.0.0.1:{free_port()}/mcp", EgressPolicy())  # loopback not allowlisted
    with pytest.raises(EgressRefused):
        await guarded.request("POST", {}, b"{}")

    async with _server(_echo_forever) as (url, accepted):
        pool = Http1Pool(url, LOOPBACK)
        with pytest.raises(Http1InvalidRequest, match="line break"):
            await pool.request("POST", {"authorization": "Bearer x\r\nx-injected: 1"}, b"{}")
        with pytest.raises(Http1InvalidRequest, match=r"'x-key' holds characters HTTP/1\.1 cannot carry") as caught:
            await pool.request("POST", {"accept": "*/*", "x-key": "s3cr\u2019t"}, b"{}")
        assert "s3cr" not in str(caught.value)  # the header's name, never its value
        async with await pool.request("POST", {}, b"7") as response:  # the slot was given back
            assert await response.read(100) == b'{"got":7}'
        await pool.aclose()
    assert accepted == [1]


async def test_tls_verifies_the_origins_certificate_for_its_host_name(tmp_path: Path) -> None:
    ca = make_local_ca()
    async with _server(_echo_forever, ca.server_context(tmp_path)) as (url, _):
        trusting = Http1Pool(url, LOOPBACK, ssl_context=ca.client_context())
        async with await trusting.request("POST", {}, b"3") as response:
            assert await response.read(100) == b'{"got":3}'
        await trusting.aclose()

        default = Http1Pool(url, LOOPBACK)  # the system's trust store does not know this CA
        with pytest.raises(Http1Unreachable, match="the origin's TLS certificate did not verify") as failed:
            await default.request("POST", {}, b"{}")
        assert "certificate" in str(failed.value).split("(", 1)[1]  # OpenSSL's own reason, in words
        assert "trust store" in str(failed.value)
        assert "localhost" not in str(failed.value) and "127.0.0.1" not in str(failed.value)  # no address
        await default.aclose()


def test_a_name_mismatch_is_reported_without_the_name() -> None:
    mismatch = ssl.SSLCertVerificationError(1, "certificate verify failed")
    mismatch.verify_message = "Hostname mismatch, certificate is not valid for 'inventory.internal'."
    reason = _failure(mismatch)
    assert reason.startswith("the origin's TLS certificate did not verify (Hostname mismatch)")
    assert "inventory.internal" not in reason


async def test_pools_share_one_default_tls_context() -> None:
    """The system trust store is read from disk once per process, not once per pool."""
    first, second = (Http1Pool(f"https://127.0.0.1:{free_port()}/mcp", LOOPBACK) for _ in range(2))
    assert first._ssl is not None and first._ssl is second._ssl
    assert Http1Pool(f"http://127.0.0.1:{free_port()}/mcp", LOOPBACK)._ssl is None


async def test_a_request_cancelled_while_waiting_drops_its_connection_and_frees_its_slot() -> None:
    async def slow_then_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(accepted) == 1:
            await _read_request(reader)
            await asyncio.sleep(10)  # never answers the first request
        await _echo_forever(reader, writer)

    async with _server(slow_then_echo) as (url, accepted):
        pool = Http1Pool(url, LOOPBACK, limit=1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.request("POST", {}, b"{}"), 0.2)
        async with await asyncio.wait_for(pool.request("POST", {}, b"5"), 5) as response:  # the one slot is free
            assert await response.read(100) == b'{"got":5}'
        await pool.aclose()
    assert accepted == [1, 2]  # the abandoned connection was not reused


async def test_a_second_reply_to_one_request_is_not_taken_for_the_next_ones() -> None:
    async def twice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(accepted) == 1:  # the first connection answers its first request twice, in one write
            _, body = await _read_request(reader)
            writer.write(_reply(b'{"first":' + body + b"}") + _reply(b'{"second":' + body + b"}"))
            await writer.drain()
        await _echo_forever(reader, writer)

    async with _server(twice) as (url, accepted):
        pool = Http1Pool(url, LOOPBACK)
        async with await pool.request("POST", {}, b"1") as response:
            assert await response.read(100) == b'{"first":1}'
            assert response.headers["content-length"] == "11"
        async with await pool.request("POST", {}, b"2") as response:  # on a new connection
            assert await response.read(100) == b'{"got":2}'
        await pool.aclose()
    assert accepted == [1, 2]


async def test_a_trailer_line_that_never_ends_is_refused_at_the_head_bound_not_read_on() -> None:
    """After a chunked body, httptools holds an unfinished trailer line whole, as it does a header
    line: the same bound applies there (reading on cost memory and CPU growing with its square)."""
    sent: list[int] = []

    async def endless_trailer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"2\r\n{}\r\n0\r\nx-trailer: ")
        for _ in range(1024):  # up to 16 MiB, never a line end
            writer.write(b"a" * 16384)
            sent.append(1)
            await writer.drain()

    async with _server(endless_trailer) as (url, _):
        pool = Http1Pool(url, LOOPBACK)
        with pytest.raises(Http1Error, match="trailer is too large"):
            async with await pool.request("POST", {}, b"{}") as response:
                await asyncio.wait_for(response.read(100), 10)
        await pool.aclose()
    assert len(sent) < 1024  # the connection was dropped: the origin could not send it all


async def test_interim_replies_are_passed_over_and_the_connection_stays_in_step() -> None:
    """A 103 Early Hints (RFC 9110 §15.2: a client takes 1xx replies) before the reply: the caller
    gets the reply, and the next request on the kept connection gets its own, not a late one."""

    async def hinting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, body = await _read_request(reader)
            writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)  # the hint and the reply in separate reads
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + _reply(b'{"got":' + body + b"}"))
            await writer.drain()

    async with _server(hinting) as (url, accepted):
        pool = Http1Pool(url, LOOPBACK)
        for n in (b"1", b"2"):
            async with await pool.request("POST", {}, n) as response:
                assert response.status == 200
                assert "link" not in response.headers  # the hint's headers are not the reply's
                assert await response.read(100) == b'{"got":' + n + b"}"
        await pool.aclose()
    assert accepted == [1]

    async def endless_hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        for _ in range(100):
            writer.write(b"HTTP/1.1 103 Early Hints\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with _server(endless_hints) as (url, _):
        pool = Http1Pool(url, LOOPBACK)
        with pytest.raises(Http1Error, match=r"more than 8 interim \(1xx\) replies"):
            await asyncio.wait_for(pool.request("POST", {}, b"{}"), 5)
        await pool.aclose()


async def test_an_origin_path_with_characters_a_request_line_cannot_carry_goes_percent_encoded() -> None:
    seen: list[bytes] = []

    async def recording(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, body = await _read_request(reader)
        seen.append(head.split(b"\r\n", 1)[0])
        writer.write(_reply(b'{"got":' + body + b"}"))
        await writer.drain()

    async with _server(recording) as (url, _):
        pool = Http1Pool(url.replace("/mcp", "/m\u20ac/a%2Fb?q=\u00fc&r=%2F"), LOOPBACK)
        async with await pool.request("POST", {}, b"1") as response:
            assert await response.read(100) == b'{"got":1}'
        await pool.aclose()
    assert seen == [b"POST /m%E2%82%AC/a%2Fb?q=%C3%BC&r=%2F HTTP/1.1"]
