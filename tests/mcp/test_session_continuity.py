"""Two replicas sharing one database serve one MCP session, as behind a round-robin load balancer."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bastion.mcp.session_seal import SessionSeal
from bastion.store.db import Database
from bastion.store.repos.mcp_sessions import session_sealing_key
from tests.harness import STDIO_INVENTORY, Bastion, eventually, run_bastion

pytestmark = pytest.mark.anyio

SLUG = "shared"
INIT: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
PING = {"jsonrpc": "2.0", "id": 2, "method": "ping"}


@dataclass
class Replicas:
    a: Bastion
    b: Bastion
    directory: Path
    server_id: str
    token: str
    token_id: str
    other_token: str


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    directory = tmp_path_factory.mktemp("continuity")  # one SQLite file for both
    with run_bastion(directory) as a:
        a.add_origin("local", command=STDIO_INVENTORY)
        server = a.publish_server(SLUG, {"origin": "local", "items": ["list_stock"]})
        created = a.ok("POST", "/api/tokens", json={"name": "client", "servers": [SLUG], "expires_in_days": 1})
        other = a.token(SLUG, name="other")
        # B starts after the writes, so its first snapshot already holds them.
        # One SQLite file, but each replica its own audit journal directory (one process per directory).
        with run_bastion(directory, audit_journal_dir=directory / "journal-b") as b:
            yield Replicas(a, b, directory, server["id"], created["token"], created["id"], other)


def post(replica: Bastion, body: dict[str, Any], token: str, session_id: str | None = None) -> httpx.Response:
    headers = {"accept": "application/json, text/event-stream", "authorization": f"Bearer {token}"}
    if session_id is not None:
        headers["mcp-session-id"] = session_id
    return replica.http.post(f"/servers/{SLUG}/mcp", content=json.dumps(body), headers=headers)


def open_session(replica: Bastion, token: str) -> str:
    response = post(replica, INIT, token)
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


async def stored_key(replicas: Replicas) -> bytes:
    """The sealing key both replicas took from the store (neither has one configured)."""
    database = Database(replicas.a.settings.database_url)
    try:
        return await session_sealing_key(database)
    finally:
        await database.close()


class RoundRobin(httpx2.AsyncBaseTransport):
    """A load balancer without stickiness: each request goes to the next replica in turn."""

    def __init__(self, *ports: int) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._ports = ports
        self._turn = 0
        self.sent: list[tuple[int, str, int]] = []  # (port, method, status), as answered
        self.session_ids: set[str] = set()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self._ports[self._turn % len(self._ports)]
        self._turn += 1
        request.url = request.url.copy_with(port=port)
        request.headers["host"] = f"127.0.0.1:{port}"
        if "mcp-session-id" in request.headers:
            self.session_ids.add(request.headers["mcp-session-id"])
        response = await self._inner.handle_async_request(request)
        self.sent.append((port, request.method, response.status_code))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_one_session_keeps_working_when_its_requests_alternate_between_replicas(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    balancer = RoundRobin(a.settings.port, b.settings.port)
    http = httpx2.AsyncClient(
        headers={"authorization": f"Bearer {replicas.token}"},
        transport=balancer,
        timeout=httpx2.Timeout(30, read=300),
    )
    async with (
        http,
        Client(streamable_http_client(a.mcp_url(SLUG), http_client=http), mode="legacy", cache=None) as client,
    ):
        assert balancer.sent[0][:2] == (a.settings.port, "POST")  # initialize, on A
        for _ in range(50):
            result = await client.call_tool("list_stock", {})
            assert not result.is_error, result

    refused = [entry for entry in balancer.sent if entry[2] >= 400]
    assert refused == []  # no "Session not found" anywhere
    assert len(balancer.session_ids) == 1
    posts = [port for port, method, _ in balancer.sent if method == "POST"]
    assert posts.count(a.settings.port) >= 25 and posts.count(b.settings.port) >= 25


async def test_a_session_opened_on_one_replica_is_usable_on_the_other_from_its_first_request(
    replicas: Replicas,
) -> None:
    session_id = open_session(replicas.b, replicas.token)
    assert post(replicas.a, PING, replicas.token, session_id).status_code == 200
    assert post(replicas.b, PING, replicas.token, session_id).status_code == 200


async def test_a_tampered_session_id_is_404_on_every_replica(replicas: Replicas) -> None:
    session_id = open_session(replicas.a, replicas.token)
    middle = len(session_id) // 2
    tampered = session_id[:middle] + ("A" if session_id[middle] != "A" else "B") + session_id[middle + 1 :]
    for replica in (replicas.a, replicas.b):
        for forged in (tampered, session_id[:-1], session_id + "A"):
            assert post(replica, PING, replicas.token, forged).status_code == 404


async def test_another_token_presenting_the_session_id_is_404_on_every_replica(replicas: Replicas) -> None:
    session_id = open_session(replicas.a, replicas.token)
    for replica in (replicas.a, replicas.b):
        response = post(replica, PING, replicas.other_token, session_id)
        assert response.status_code == 404
        assert "unknown or expired MCP session" in response.json()["error"]["message"]


async def test_an_id_past_the_session_lifetime_is_404_on_every_replica(replicas: Replicas) -> None:
    seal = SessionSeal([await stored_key(replicas)])
    lifetime = replicas.a.settings.session_lifetime_seconds

    def sealed(issued_at: float) -> str:
        session_id, _ = seal.seal(
            server_id=replicas.server_id,
            owner=replicas.token_id,
            protocol_version="2025-11-25",
            capabilities=[],
            issued_at=int(issued_at),
        )
        return session_id

    for replica in (replicas.a, replicas.b):
        # The same seal, issued now, is accepted: the refusal below is the lifetime's doing.
        assert post(replica, PING, replicas.token, sealed(time.time())).status_code == 200
        assert post(replica, PING, replicas.token, sealed(time.time() - lifetime - 1)).status_code == 404


async def test_a_deleted_session_is_refused_at_once_where_deleted_and_soon_on_the_other_replica(
    replicas: Replicas,
) -> None:
    session_id = open_session(replicas.a, replicas.token)
    assert post(replicas.b, PING, replicas.token, session_id).status_code == 200  # B holds it now
    headers = {"authorization": f"Bearer {replicas.token}", "mcp-session-id": session_id}

    assert replicas.a.http.delete(f"/servers/{SLUG}/mcp", headers=headers).status_code == 204

    assert post(replicas.a, PING, replicas.token, session_id).status_code == 404

    async def refused_on_b() -> bool:
        return post(replicas.b, PING, replicas.token, session_id).status_code == 404

    await eventually(refused_on_b, deadline=5 * replicas.b.settings.epoch_poll_seconds + 5)


# Not async: starting a third replica runs its own event loop.
def test_a_replica_with_another_key_refuses_the_ids_and_a_rotated_one_still_opens_the_old(
    replicas: Replicas,
) -> None:
    stored = anyio.run(stored_key, replicas)
    rotated_keys = ",".join(base64.urlsafe_b64encode(key).decode() for key in (os.urandom(32), stored))
    old_id = open_session(replicas.a, replicas.token)

    journal = replicas.directory / "journal-rotated"
    with run_bastion(replicas.directory, session_key=rotated_keys, audit_journal_dir=journal) as rotated:
        new_id = open_session(rotated, replicas.token)
        assert post(rotated, PING, replicas.token, old_id).status_code == 200
        assert post(rotated, PING, replicas.token, new_id).status_code == 200
        for replica in (replicas.a, replicas.b):
            assert post(replica, PING, replicas.token, new_id).status_code == 404
