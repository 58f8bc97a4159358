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
    """Yield the data of each `message` event; raise UpstreamTooLarge if one event exceeds `max_bytes`."""
    buffer = b""
    data: list[str] = []
    event = "message"
    async for chunk in chunks:
        buffer += chunk
        # A trailing CR may be the first half of a CRLF split across chunks: keep it back.
        cut = len(buffer) - 1 if buffer.endswith(b"\r") else len(buffer)
        ready, held = buffer[:cut], buffer[cut:]
        *lines, rest = ready.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        buffer = rest + held
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if not line:
                if data and event == "message":
                    yield "\n".join(data)
                data, event = [], "message"
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                elif name == "event":
                    event = value or "message"
        if len(buffer) + sum(len(d) for d in data) > max_bytes:
            raise UpstreamTooLarge(f"origin {origin!r} sent more than {max_bytes} bytes in one message")
    if data and event == "message":
        yield "\n".join(data)
