"""The request both targets receive and the check every reply must pass.

The 2026-07-28 wire is stateless (version, method and name in headers and `_meta`), so neither
target needs a session and every POST is a complete `tools/call`.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["TEXT", "check_reply", "request_body", "request_headers"]

TEXT = "hello"
PROTOCOL = "2026-07-28"
_BODY = (
    b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"},'
    b'"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
    b'"io.modelcontextprotocol/clientCapabilities":{}}}}'
)


def request_body(request_id: int) -> bytes:
    return _BODY % request_id


def request_headers(token: str | None) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": PROTOCOL,
        "mcp-method": "tools/call",
        "mcp-name": "echo",
    }
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return headers


def check_reply(status: int, body: bytes, request_id: int) -> str | None:
    """None for a JSON-RPC result echoing the text; otherwise a short reason (counted as an error)."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    try:
        message: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"not JSON: {body[:200]!r}"
    if not isinstance(message, dict) or message.get("id") != request_id:
        return f"wrong id or shape: {body[:200]!r}"
    result = message.get("result")
    if not isinstance(result, dict) or result.get("isError"):
        return f"not a successful result: {body[:200]!r}"
    content = result.get("content")
    if not (isinstance(content, list) and content and isinstance(content[0], dict) and content[0].get("text") == TEXT):
        return f"echo text missing: {body[:200]!r}"
    return None
