"""One caller that stops reading cannot stall an origin that others share: progress for a client whose
stream is full gets a moment, then no more, and the origin's other callers are answered as usual."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import orjson

from tests.governance.people import mcp
from tests.harness import run_bastion

MODERN = "2026-07-28"


def _flood_without_reading(base_url: str, token: str) -> socket.socket:
    """A client asking for progress, then reading nothing: its socket fills, then Bastion's writes wait."""
    host, port = base_url.removeprefix("http://").split(":")
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "progressToken": "p1",
    }
    params = {"name": "flood", "arguments": {"count": 5000}, "_meta": meta}
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
    head = (
        f"POST /servers/shared/mcp HTTP/1.1\r\nhost: {host}:{port}\r\nauthorization: Bearer {token}\r\n"
        "content-type: application/json\r\naccept: application/json, text/event-stream\r\n"
        f"mcp-protocol-version: {MODERN}\r\nmcp-method: tools/call\r\nmcp-name: flood\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((host, int(port)))
    stalled.sendall(head.encode() + body)
    return stalled


def test_a_caller_that_stops_reading_its_progress_does_not_stall_the_origin_for_others(tmp_path: Path) -> None:
    with run_bastion(tmp_path, upstream_timeout_seconds=20) as gw:
        gw.add_origin("probe", command=[sys.executable, "-m", "tests.origins.probe"])
        gw.publish_server("shared", {"origin": "probe", "items": ["flood", "status"]})
        token = gw.token("shared")
        stalled = _flood_without_reading(gw.base_url, token)
        try:
            time.sleep(3)  # megabytes of progress: the stalled client's buffers are full long before
            started = time.monotonic()
            other = mcp(gw, "shared", token, "tools/call", name="status", arguments={})
            took = time.monotonic() - started
        finally:
            stalled.close()
        assert other.status_code == 200 and "result" in other.json(), other.text
        assert took < 10, f"another caller waited {took:.1f}s behind the stalled one"
