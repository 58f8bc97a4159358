"""Minimal benchmark origin: one tool, ``echo(text: str) -> str``, over Streamable HTTP at ``/mcp``.

Used to measure gateway overhead, so it is configured for the SDK's cheapest serving path:

* ``stateless_http=True`` - no ``Mcp-Session-Id`` bookkeeping, no per-session server task, no
  standalone GET stream; handshake-era (2025-11-25) clients still work (``initialize`` is answered,
  every later POST is served on its own). 2026-07-28 clients are always served per request.
* ``json_response=True`` - each POST is answered with one ``application/json`` body instead of an
  SSE stream (no event framing, no keepalive task).
* uvicorn at log level ``warning`` (no per-request access log); uvicorn picks uvloop/httptools when
  installed.

Run: ``python -m bastion.demo.echo --host 127.0.0.1 --port 8002``.
"""

from __future__ import annotations

import argparse

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from starlette.applications import Starlette


def build_server() -> MCPServer:
    """Build the echo server (a fresh instance, so tests can also drive it in-process)."""
    server = MCPServer("bastion-demo-echo", version="0.1.0", log_level="WARNING")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    def echo(text: str) -> str:
        """Return the input unchanged."""
        return text

    return server


def build_app(host: str = "127.0.0.1") -> Starlette:
    """The ASGI app: stateless, JSON-response Streamable HTTP at ``/mcp``."""
    return build_server().streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, json_response=True, host=host
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bastion echo benchmark origin (Streamable HTTP at /mcp).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args(argv)
    uvicorn.run(build_app(args.host), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
