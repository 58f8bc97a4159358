"""An HTTP "origin" that answers every request with a 307 redirect to `--to`, for the SSRF tests.

Run: python -m tests.origins.redirect --port N --to URL
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route


def build_app(target: str) -> Starlette:
    async def redirect(_request: Request) -> Response:
        # 307 keeps method and body: a client that followed it would POST its JSON-RPC there.
        return RedirectResponse(target, status_code=307)

    return Starlette(routes=[Route("/mcp", redirect, methods=["GET", "POST", "DELETE"])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--to", required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(args.to), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
