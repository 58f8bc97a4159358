"""What one caller may hold of the session machinery: sessions opened per window per person
(`BASTION_RATE_LIMIT_MCP_SESSIONS`), notification streams held per token on a replica
(`BASTION_MCP_STREAMS_PER_TOKEN`). Past either: 429 with Retry-After, and nothing else held."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import anyio
import httpx
import pytest

from tests.governance.people import MODERN, add_person, as_person
from tests.harness import STDIO_INVENTORY, Bastion, eventually, run_bastion
from tests.mcp.test_hardening import ACCEPT, INIT

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    limits = {"rate_limit_mcp_sessions": "4/minute", "mcp_streams_per_token": 2}
    with run_bastion(tmp_path_factory.mktemp("session-limits"), **limits) as bastion:
        bastion.add_origin("local", command=STDIO_INVENTORY)
        bastion.publish_server("held", {"origin": "local"})
        yield bastion


def _initialize(gw: Bastion, token: str) -> httpx.Response:
    headers = {**ACCEPT, "authorization": f"Bearer {token}"}
    return gw.http.post("/servers/held/mcp", json=INIT, headers=headers)


async def test_a_person_opens_sessions_up_to_the_window_with_any_of_their_tokens_then_429(gw: Bastion) -> None:
    first, second = gw.token("held", name="one"), gw.token("held", name="two")
    opened = [_initialize(gw, first), _initialize(gw, second), _initialize(gw, first), _initialize(gw, second)]
    assert [r.status_code for r in opened] == [200, 200, 200, 200]
    # A 2026-07-28 listen stream is a session too: refused once the window is spent.
    with anyio.fail_after(10):  # an accepted listen is a stream that stays open: only its start is read
        async with (
            httpx.AsyncClient(base_url=gw.base_url) as http,
            http.stream("POST", "/servers/held/mcp", json=_listen_body(), headers=_listen_headers(first)) as listen,
        ):
            assert listen.status_code == 429 and int(listen.headers["retry-after"]) >= 1
            assert "too many MCP sessions opened" in (await listen.aread()).decode()
    again = _initialize(gw, first)
    assert again.status_code == 429 and "mcp-session-id" not in again.headers
    assert int(again.headers["retry-after"]) >= 1 and "reuse an open session" in again.json()["error"]["message"]
    # Each person has their own budget.
    ann = add_person(gw, "ann", ["member"])
    token = as_person(gw, ann, "POST", "/api/tokens", json={"name": "a", "servers": ["held"], "expires_in_days": 1})
    assert token.status_code == 201, token.text
    assert _initialize(gw, token.json()["token"]).status_code == 200


async def test_a_token_holds_at_most_its_streams_and_a_closed_one_frees_its_place(gw: Bastion) -> None:
    bea = add_person(gw, "bea", ["member"])
    created = as_person(gw, bea, "POST", "/api/tokens", json={"name": "s", "servers": ["held"], "expires_in_days": 1})
    token = created.json()["token"]
    sessions = [_initialize(gw, token).headers["mcp-session-id"] for _ in range(3)]  # 3 of bea's 4 a minute
    headers = {"authorization": f"Bearer {token}", "accept": "text/event-stream", "mcp-protocol-version": "2025-11-25"}

    def get(session_id: str) -> AbstractAsyncContextManager[httpx.Response]:
        return http.stream("GET", "/servers/held/mcp", headers={**headers, "mcp-session-id": session_id})

    async with httpx.AsyncClient(base_url=gw.base_url, timeout=10) as http, AsyncExitStack() as held:
        first = await held.enter_async_context(get(sessions[0]))
        assert first.status_code == 200
        async with get(sessions[0]) as again:  # a session's own stream is replaced, not counted against it
            assert again.status_code == 200
        streams = [await held.enter_async_context(get(session_id)) for session_id in sessions[:2]]
        assert [s.status_code for s in streams] == [200, 200]
        third = await http.get("/servers/held/mcp", headers={**headers, "mcp-session-id": sessions[2]})
        assert third.status_code == 429 and "holds 2 open MCP notification streams" in third.json()["error"]["message"]
        assert third.headers["retry-after"] == "30"
        # A 2026-07-28 listen is a stream too; refused for it, it spends none of the person's sessions.
        listen = await http.post("/servers/held/mcp", json=_listen_body(), headers=_listen_headers(token))
        assert listen.status_code == 429 and "notification streams" in listen.json()["error"]["message"]
        assert _initialize(gw, token).status_code == 200  # the 4th of 4
        await streams[1].aclose()

        async def freed() -> bool:
            async with get(sessions[2]) as response:
                return response.status_code == 200

        await eventually(freed)


def _listen_headers(token: str) -> dict[str, str]:
    headers = {**ACCEPT, "authorization": f"Bearer {token}", "mcp-protocol-version": MODERN}
    return headers | {"mcp-method": "subscriptions/listen"}


def _listen_body() -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": 7, "method": "subscriptions/listen", "params": {"notifications": {}, "_meta": meta}}
