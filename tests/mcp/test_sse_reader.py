"""The bounded SSE reader (`bastion.mcp.upstream.sse`): the same events however the stream is cut
into chunks (a CRLF split across two, a long line over many), and never more than the bound held."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bastion.errors import UpstreamTooLarge
from bastion.mcp.upstream.sse import iter_sse_data

pytestmark = pytest.mark.anyio

STREAM = (
    b": keep-alive\r\n\r\n"
    b'data: {"a": 1}\r\n\r\n'
    b"event: endpoint\ndata: /not-a-message\n\n"
    b"data: first line\rdata: second line\r\r"
    b"id: 7\ndata:no-space\n\n"
    b"data: " + b"x" * 3000 + b"\r\n\r\n"
    b"data: cut off befo"  # the stream ends inside a line: not an event (WHATWG: discarded)
)
EXPECTED = ['{"a": 1}', "first line\nsecond line", "no-space", "x" * 3000]


async def _read(parts: list[bytes], max_bytes: int = 10_000) -> list[str]:
    async def chunks() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    return [data async for data in iter_sse_data(chunks(), max_bytes=max_bytes, origin="o")]


async def test_every_two_way_cut_and_byte_by_byte_read_the_same_events() -> None:
    for at in range(len(STREAM) + 1):
        assert await _read([STREAM[:at], STREAM[at:]]) == EXPECTED, at
    assert await _read([bytes([b]) for b in STREAM]) == EXPECTED
    assert await _read([STREAM[i : i + 7] for i in range(0, len(STREAM), 7)]) == EXPECTED


async def test_an_event_over_the_bound_is_refused_before_more_than_the_bound_is_held() -> None:
    held: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        yield b"data: "
        while True:
            held.append(1)
            yield b"y" * 1024

    with pytest.raises(UpstreamTooLarge, match="more than 65536 bytes in one message"):
        async for _ in iter_sse_data(endless(), max_bytes=65_536, origin="o"):
            pass
    assert len(held) <= 65  # refused at the chunk that passed the bound
    with pytest.raises(UpstreamTooLarge):  # many data lines of one event count together
        await _read([b"data: " + b"z" * 900 + b"\n"] * 20, max_bytes=10_000)


async def test_many_small_events_in_one_read_are_each_within_the_bound() -> None:
    """The bound is per event: one read holding many events, together over it, is not refused."""
    event = b"data: " + b"e" * 100 + b"\n\n"
    assert await _read([event * 200], max_bytes=10_000) == ["e" * 100] * 200
