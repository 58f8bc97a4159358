"""Ending a handshake-era origin's session (DELETE) obeys the rule every origin request obeys:
redirects are never followed, so the origin's credential and session id go to the origin alone."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from aiohttp import web

from bastion.catalog.snapshot import OriginSpec
from bastion.mcp.upstream.base import OriginGuard
from bastion.mcp.upstream.commands import StdioPolicy
from bastion.mcp.upstream.http import HttpOriginClient
from bastion.net.egress import EgressPolicy
from bastion.vault.credentials import OriginCredential

pytestmark = pytest.mark.anyio


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def test_the_session_ending_delete_does_not_follow_a_redirect(anyio_backend: str) -> None:
    collected: list[dict[str, str]] = []
    deletes: list[str] = []

    async def collector(request: web.Request) -> web.Response:
        collected.append(dict(request.headers))
        return web.Response(text="ok")

    sink = web.Application()
    sink.router.add_route("*", "/{tail:.*}", collector)
    sink_runner, sink_url = await _serve(sink)

    async def origin(request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            deletes.append(request.headers.get("mcp-session-id", ""))
            raise web.HTTPTemporaryRedirect(f"{sink_url}/collect")
        if request.method != "POST":
            return web.Response(status=405)
        message: dict[str, Any] = await request.json()
        if "id" not in message:
            return web.Response(status=202)
        if message["method"] == "initialize":  # a handshake-era origin: its session has an id
            result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "o", "version": "1"}}
            reply = {"jsonrpc": "2.0", "id": message["id"], "result": result}
            return web.json_response(reply, headers={"mcp-session-id": "sess-1"})
        error = {"code": -32601, "message": "method not found"}  # server/discover: not this era
        return web.json_response({"jsonrpc": "2.0", "id": message["id"], "error": error})

    app = web.Application()
    app.router.add_route("*", "/mcp", origin)
    origin_runner, origin_url = await _serve(app)
    spec = OriginSpec(
        "o1", "crm", "http", f"{origin_url}/mcp", None, None,
        credential=OriginCredential("header", headers=(("x-api-key", "service-secret"),)),
    )  # fmt: skip
    guard = OriginGuard(egress=EgressPolicy(allow_cidrs=("127.0.0.0/8",)), stdio=StdioPolicy())

    async def notify(*_args: Any) -> None:
        return None

    try:
        async with anyio.create_task_group() as tasks:
            client = HttpOriginClient(spec, timeout=5, max_bytes=100_000, notify=notify, task_group=tasks, guard=guard)
            await client.connect()
            await client.aclose()
            tasks.cancel_scope.cancel()
    finally:
        await origin_runner.cleanup()
        await sink_runner.cleanup()
    assert deletes == ["sess-1"]  # the origin was asked to end its session...
    assert collected == []  # ...and nothing, credential or session id, went where it pointed
