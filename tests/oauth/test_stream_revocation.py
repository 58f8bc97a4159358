"""A notification stream lasts no longer than the credential that opened it: revoked, it ends at once;
expired (the token or the session), it ends then. Other streams stay open."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest

from tests.harness import Bastion, eventually, run_bastion
from tests.oauth.flows import MODERN, Flow, Tokens, publish_demo

pytestmark = pytest.mark.anyio

_ACCEPT = "application/json, text/event-stream"
_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
_LISTEN = {
    "jsonrpc": "2.0",
    "id": 7,
    "method": "subscriptions/listen",
    "params": {
        "notifications": {"toolsListChanged": True},
        "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}},
    },
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("stream-revocation")) as bastion:
        publish_demo(bastion, "demo")
        yield bastion


@pytest.fixture
async def flow(gw: Bastion) -> AsyncIterator[Flow]:
    async with Flow(gw) as person:
        yield person


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "accept": _ACCEPT}


@dataclass
class Watched:
    """A stream read to its end in the background: what arrived, and whether it ended."""

    received: bytes = b""
    ended: anyio.Event = field(default_factory=anyio.Event)

    async def read(self, stream: httpx.Response) -> None:
        async for chunk in stream.aiter_raw():
            self.received += chunk
        self.ended.set()

    async def wait_ended(self, within: float = 10) -> None:
        with anyio.fail_after(within):
            await self.ended.wait()

    async def still_open_after(self, seconds: float) -> bool:
        await anyio.sleep(seconds)
        return not self.ended.is_set()


@asynccontextmanager
async def watching(http: httpx.AsyncClient, method: str, url: str, **request: Any) -> AsyncIterator[Watched]:
    watched = Watched()
    async with http.stream(method, url, **request) as stream, anyio.create_task_group() as tasks:
        assert stream.status_code == 200
        tasks.start_soon(watched.read, stream)
        yield watched
        tasks.cancel_scope.cancel()


@asynccontextmanager
async def get_stream(http: httpx.AsyncClient, url: str, token: str) -> AsyncIterator[Watched]:
    """A handshake-era session's GET stream, opened with `token`."""
    initialized = await http.post(url, json=_INIT, headers=_auth(token))
    assert initialized.status_code == 200, initialized.text
    session = {**_auth(token), "mcp-session-id": initialized.headers["mcp-session-id"]}
    session["mcp-protocol-version"] = "2025-11-25"
    done = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    assert done.status_code == 202
    async with watching(http, "GET", url, headers={**session, "accept": "text/event-stream"}) as watched:
        yield watched


@asynccontextmanager
async def listen_stream(http: httpx.AsyncClient, url: str, token: str) -> AsyncIterator[Watched]:
    """A 2026-07-28 `subscriptions/listen` stream, opened with `token`."""
    headers = {**_auth(token), "mcp-protocol-version": MODERN, "mcp-method": "subscriptions/listen"}
    async with watching(http, "POST", url, json=_LISTEN, headers=headers) as watched:
        yield watched
    assert b"notifications/subscriptions/acknowledged" in watched.received


def streams_open(gw: Bastion) -> int:
    return sum(len(sessions) for sessions in gw.services.sessions.oauth_streams().values())


async def revoke(flow: Flow, tokens: Tokens, which: str = "access_token") -> None:
    response = await flow.http.post(
        "/oauth/revoke", data={"token": getattr(tokens, which), "client_id": tokens.client_id}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("opened", [get_stream, listen_stream], ids=["get", "listen"])
async def test_revoking_the_oauth_token_that_opened_a_stream_ends_it_and_no_other(
    gw: Bastion, flow: Flow, opened: Any
) -> None:
    url = gw.mcp_url("demo")
    mine, other = await flow.tokens(), await flow.tokens()
    async with opened(flow.http, url, mine.access_token) as stream, opened(flow.http, url, other.access_token) as kept:

        async def both_open() -> bool:
            return streams_open(gw) == 2

        await eventually(both_open)
        await revoke(flow, mine)
        await stream.wait_ended()
        assert await kept.still_open_after(0.5)  # a revocation elsewhere does not end it
        assert streams_open(gw) == 1


async def test_a_token_revoked_while_its_listen_request_arrives_opens_no_stream(gw: Bastion, flow: Flow) -> None:
    """The request is let in (its token checked), then its body takes its time; a revocation committed
    meanwhile, before the stream is registered where revocations look, still refuses it."""
    tokens = await flow.tokens()
    body = json.dumps(_LISTEN).encode()
    head = (
        "POST /servers/demo/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {tokens.access_token}\r\nAccept: {_ACCEPT}\r\n"
        f"Content-Type: application/json\r\nMcp-Protocol-Version: {MODERN}\r\n"
        f"Mcp-Method: subscriptions/listen\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    url = httpx.URL(gw.base_url)
    assert url.port is not None
    async with await anyio.connect_tcp(url.host, url.port) as connection:
        await connection.send(head)
        await anyio.sleep(0.3)  # authenticated; the endpoint waits for the body
        before = gw.services.holder.current.epoch
        await revoke(flow, tokens)

        async def seen() -> bool:
            return gw.services.holder.current.epoch > before

        await eventually(seen)
        await connection.send(body)
        with anyio.fail_after(10):
            answer = await connection.receive()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert streams_open(gw) == 0


async def test_withdrawing_the_grant_ends_the_stream_of_an_access_token_of_it(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens()
    async with get_stream(flow.http, gw.mcp_url("demo"), tokens.access_token) as stream:
        await revoke(flow, tokens, "refresh_token")  # the whole grant
        await stream.wait_ended()


async def test_an_api_tokens_stream_ends_with_its_revocation(gw: Bastion, flow: Flow) -> None:
    created = await anyio.to_thread.run_sync(
        lambda: gw.ok("POST", "/api/tokens", json={"name": "streamer", "servers": ["demo"], "expires_in_days": 1})
    )
    async with get_stream(flow.http, gw.mcp_url("demo"), created["token"]) as stream:
        await anyio.to_thread.run_sync(lambda: gw.ok("POST", f"/api/tokens/{created['id']}/revoke"))
        await stream.wait_ended()


@pytest.fixture(scope="module")
def brief(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("brief-sessions"), session_lifetime_seconds=2) as bastion:
        publish_demo(bastion, "demo")
        yield bastion


async def test_a_stream_ends_when_the_session_it_belongs_to_expires(brief: Bastion) -> None:
    token = await anyio.to_thread.run_sync(lambda: brief.token("demo"))
    async with httpx.AsyncClient(base_url=brief.base_url) as http:
        async with get_stream(http, brief.mcp_url("demo"), token) as stream:
            assert await stream.still_open_after(0.5)
            await stream.wait_ended(within=5)
