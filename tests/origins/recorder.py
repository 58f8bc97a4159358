"""The demo inventory origin over Streamable HTTP, recording every Authorization-like header it receives
(and the W3C trace context).

Run: python -m tests.origins.recorder --port N --log FILE. Each request appends one JSON line,
{"authorization": ..., "x-api-key": ..., "traceparent": ..., "tracestate": ...} (null when absent),
so a test can prove what reached it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import uvicorn

from bastion.demo.inventory import build_server

_RECORDED = (b"authorization", b"x-api-key", b"traceparent", b"tracestate")


def recording(app: Any, log: Path) -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            entry = {
                name.decode(): (headers[name].decode("latin-1") if name in headers else None) for name in _RECORDED
            }
            with log.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")
        await app(scope, receive, send)

    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    app = build_server().streamable_http_app(streamable_http_path="/mcp")
    uvicorn.run(recording(app, args.log), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
