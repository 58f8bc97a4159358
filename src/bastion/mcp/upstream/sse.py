"""A bounded Server-Sent Events reader.

Hand-written because the reply size must be bounded while streaming (an origin
must not be able to make Bastion buffer an endless line), which the SSE
client libraries do not offer. Follows the WHATWG event-stream parsing rules
for the fields MCP uses (`data`, `event`, `id`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from bastion.errors import UpstreamTooLarge

__all__ = ["iter_sse_data"]


async def iter_sse_data(chunks: AsyncIterator[bytes], *, max_bytes: int, origin: str) -> AsyncIterator[str]:
    """Yield the data of each `message` event; raise UpstreamTooLarge if one event exceeds `max_bytes`
    (its data lines, or a line not ended yet: at most that and one chunk is ever held).

    A line's bytes are split once, when it ends: a chunk without a line end is appended and nothing
    else (reparsing the held line at every chunk made one long event cost time quadratic in its
    length: 12 s of CPU for a 4 MB event sent in 1 KiB chunks)."""
    pending = bytearray()  # the line not ended yet (a CR kept back may be half of a CRLF)
    data: list[str] = []
    held = 0  # bytes in `data`
    event = "message"
    async for chunk in chunks:
        pending += chunk
        if b"\n" not in chunk and b"\r" not in chunk and not pending.startswith(b"\r"):
            if len(pending) + held > max_bytes:
                raise UpstreamTooLarge(f"origin {origin!r} sent more than {max_bytes} bytes in one message")
            continue
        cut = len(pending) - 1 if pending.endswith(b"\r") else len(pending)
        ready = bytes(pending[:cut])
        del pending[:cut]
        *lines, rest = ready.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        pending[0:0] = rest
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if not line:
                if data and event == "message":
                    yield "\n".join(data)
                data, held, event = [], 0, "message"
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                    held += len(value)
                elif name == "event":
                    event = value or "message"
            if held > max_bytes:
                raise UpstreamTooLarge(f"origin {origin!r} sent more than {max_bytes} bytes in one message")
        if len(pending) + held > max_bytes:
            raise UpstreamTooLarge(f"origin {origin!r} sent more than {max_bytes} bytes in one message")
    if data and event == "message":
        yield "\n".join(data)
