"""An HTTP origin that takes the first call of `read` and of `write` arriving on a kept connection and
closes that connection without answering, as an origin that crashed mid-call would. `seen` answers how
often each tool arrived. Hand-written: no SDK server can be made to drop a connection mid-request.
Run: python -m tests.origins.dropper --port N
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

_OBJECT = {"type": "object"}
TOOLS = [
    {"name": "read", "inputSchema": _OBJECT, "annotations": {"readOnlyHint": True}},
    {"name": "write", "inputSchema": _OBJECT},
    {"name": "warm", "inputSchema": _OBJECT, "annotations": {"readOnlyHint": True}},
    {"name": "seen", "inputSchema": _OBJECT, "annotations": {"readOnlyHint": True}},
]
_DROPPED_ONCE = ("read", "write")

seen: dict[str, int] = {}
dropped: set[str] = set()


def _answer(message: dict[str, Any]) -> tuple[int, dict[str, Any] | None, bytes]:
    """Status, JSON-RPC reply (None: 202) and extra header lines for one request."""
    method, request_id = message.get("method"), message.get("id")
    if request_id is None:
        return 202, None, b""
    if method == "initialize":
        result = {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "d", "version": "0"},
        }
        return 200, {"jsonrpc": "2.0", "id": request_id, "result": result}, b"mcp-session-id: s1\r\n"
    if method == "tools/list":
        return 200, {"jsonrpc": "2.0", "id": request_id, "result": {"tools": TOOLS}}, b""
    if method == "tools/call":
        name = message["params"]["name"]
        text = json.dumps(seen) if name == "seen" else f"done {name}"
        return 200, {"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": text}]}}, b""
    if method == "ping":
        return 200, {"jsonrpc": "2.0", "id": request_id, "result": {}}, b""
    error = {"code": -32601, "message": f"Method not found: {method}"}
    return 200, {"jsonrpc": "2.0", "id": request_id, "error": error}, b""


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    served = 0
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:] if ":" in line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if not head[0].startswith("POST "):
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            else:
                message = json.loads(body)
                if message.get("method") == "tools/call":
                    name = message["params"]["name"]
                    seen[name] = seen.get(name, 0) + 1
                    if served and name in _DROPPED_ONCE and name not in dropped:
                        dropped.add(name)
                        return  # taken, and the connection closes with no answer
                status, reply, extra = _answer(message)
                payload = json.dumps(reply).encode() if reply is not None else b""
                kind = b"content-type: application/json\r\n" if reply is not None else b""
                writer.write(b"HTTP/1.1 %d OK\r\n%s%scontent-length: %d\r\n\r\n" % (status, kind, extra, len(payload)))
                writer.write(payload)
            await writer.drain()
            served += 1
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve(port: int) -> None:
    server = await asyncio.start_server(_connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
