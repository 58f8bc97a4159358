"""A handshake-era HTTP origin that takes a per-person credential and binds each MCP session to
whoever opened it (the spec's "bind session IDs to user-specific information"): Bastion opens one
session per person with their credential, and everything it sends about a person's call (the
call, its cancellation, its answer to the origin's ping on the call's reply stream) goes in that
person's session, with their credential. The origin here is an aiohttp server on loopback."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import anyio
import pytest
from aiohttp import web

from bastion.catalog.snapshot import OriginSpec
from bastion.mcp.upstream.base import OnBehalf, OriginGuard
from bastion.mcp.upstream.commands import StdioPolicy
from bastion.mcp.upstream.http import HttpOriginClient
from bastion.net.egress import EgressPolicy
from bastion.oauth.origin_tokens import SERVICE_SUBJECT
from bastion.vault.credentials import OriginCredential

pytestmark = pytest.mark.anyio

_INITIALIZED = "notifications/initialized"
ANN = OnBehalf("user-ann", "t1", ("mcp",))
BOB = OnBehalf("user-bob", "t1", ("mcp",))


class _Subjects:
    """A `TokenMinter` whose tokens are the subject they were minted for: the bearer names its owner."""

    def mint(self, *, subject: str, **_claims: Any) -> str:
        return subject


@dataclass
class _Origin:
    owners: dict[str, str] = field(default_factory=dict)  # session id -> the bearer that opened it
    seen: list[dict[str, Any]] = field(default_factory=list)  # every message: method/id, bearer, session
    ids: count[int] = field(default_factory=count)
    started: anyio.Event = field(default_factory=anyio.Event)  # a slow call has arrived
    released: anyio.Event = field(default_factory=anyio.Event)  # slow calls may end (the test is over)
    # Set when a message of that method arrives ("answer" for an answer to the origin's request).
    arrived: defaultdict[str, anyio.Event] = field(default_factory=lambda: defaultdict(anyio.Event))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405)
        message: dict[str, Any] = await request.json()
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        session = request.headers.get("mcp-session-id")
        self.seen.append({"method": message.get("method"), "id": message.get("id"), "by": bearer, "session": session})
        self.arrived[message.get("method") or "answer"].set()
        if message.get("method") == "server/discover":  # an older server: no such method
            error = {"code": -32601, "message": "Method not found"}
            return web.json_response({"jsonrpc": "2.0", "id": message["id"], "error": error})
        if message.get("method") == "initialize":
            opened = f"s{next(self.ids)}"
            self.owners[opened] = bearer
            result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "o", "version": "1"}}
            reply = {"jsonrpc": "2.0", "id": message["id"], "result": result}
            return web.json_response(reply, headers={"mcp-session-id": opened})
        if session is None or self.owners.get(session) != bearer:
            return web.Response(status=404, text="Session not found")  # as the SDK's session manager answers
        if "id" not in message or "method" not in message:
            return web.Response(status=202)  # a notification, or an answer to the origin's ping
        if message["method"] != "tools/call":
            return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": {}})
        tool = message["params"]["name"]
        done = {"jsonrpc": "2.0", "id": message["id"], "result": {"content": [{"type": "text", "text": bearer}]}}
        if tool == "slow":
            self.started.set()
            await self.released.wait()
        if tool == "asks":  # a ping on the call's own reply stream, then its result
            ping = {"jsonrpc": "2.0", "id": "origin-ping", "method": "ping"}
            events = b"".join(b"data: " + json.dumps(m).encode() + b"\n\n" for m in (ping, done))
            return web.Response(body=events, content_type="text/event-stream")
        return web.json_response(done)


@asynccontextmanager
async def _client(origin: _Origin) -> AsyncIterator[HttpOriginClient]:
    app = web.Application()
    app.router.add_route("*", "/mcp", origin.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    spec = OriginSpec(
        "o1", "crm", "http", f"http://{host}:{port}/mcp", None, None,
        credential=OriginCredential("jwt", audience="https://crm.example/mcp"),
    )  # fmt: skip
    guard = OriginGuard(egress=EgressPolicy(allow_cidrs=("127.0.0.0/8",)), stdio=StdioPolicy(), tokens=_Subjects())

    async def notify(*_args: Any) -> None:
        return None

    try:
        async with anyio.create_task_group() as tasks:
            client = HttpOriginClient(spec, timeout=5, max_bytes=100_000, notify=notify, task_group=tasks, guard=guard)
            try:
                yield client
            finally:
                await client.aclose()
                tasks.cancel_scope.cancel()
    finally:
        origin.released.set()
        await runner.cleanup()


async def _call(client: HttpOriginClient, who: OnBehalf, tool: str = "echo") -> str:
    result = await client.request("tools/call", {"name": tool, "arguments": {}}, on_behalf=who)
    return str(result["content"][0]["text"])


async def test_each_person_calls_in_a_session_they_opened_and_keeps_it(anyio_backend: str) -> None:
    origin = _Origin()
    async with _client(origin) as client:
        await client.connect()
        for who in (ANN, BOB, ANN, BOB, ANN):
            assert await _call(client, who) == who.user_id
    opened = [entry["by"] for entry in origin.seen if entry["method"] == "initialize"]
    assert opened == [SERVICE_SUBJECT, ANN.user_id, BOB.user_id]  # once each, never again at a switch
    # Each person's `notifications/initialized` went in the session their initialize opened.
    initialized = [(e["by"], origin.owners[e["session"]]) for e in origin.seen if e["method"] == _INITIALIZED]
    assert initialized == [(SERVICE_SUBJECT,) * 2, (ANN.user_id,) * 2, (BOB.user_id,) * 2]


async def test_concurrent_first_calls_of_one_person_open_one_session(anyio_backend: str) -> None:
    origin = _Origin()
    async with _client(origin) as client:
        async with anyio.create_task_group() as calls:
            for _ in range(5):
                calls.start_soon(_call, client, ANN)
    assert [e["by"] for e in origin.seen if e["method"] == "initialize"] == [SERVICE_SUBJECT, ANN.user_id]


async def test_a_cancelled_call_is_cancelled_in_its_persons_session(anyio_backend: str) -> None:
    origin = _Origin()
    async with _client(origin) as client:
        await _call(client, BOB)
        async with anyio.create_task_group() as calls:
            calls.start_soon(_call, client, ANN, "slow")
            await origin.started.wait()
            calls.cancel_scope.cancel()
        with anyio.fail_after(5):
            await origin.arrived["notifications/cancelled"].wait()
    (cancel,) = [e for e in origin.seen if e["method"] == "notifications/cancelled"]
    assert cancel["by"] == ANN.user_id and origin.owners[cancel["session"]] == ANN.user_id


async def test_an_answer_to_the_origins_ping_on_a_persons_call_goes_in_their_session(anyio_backend: str) -> None:
    origin = _Origin()
    async with _client(origin) as client:
        assert await _call(client, ANN, "asks") == ANN.user_id
        with anyio.fail_after(5):
            await origin.arrived["answer"].wait()
    (answer,) = [e for e in origin.seen if e["id"] == "origin-ping" and e["method"] is None]
    assert answer["by"] == ANN.user_id and origin.owners[answer["session"]] == ANN.user_id


async def test_a_person_whose_session_the_origin_lost_gets_a_new_one_and_no_one_else_does(anyio_backend: str) -> None:
    origin = _Origin()
    async with _client(origin) as client:
        await _call(client, ANN)
        await _call(client, BOB)
        ann_session = next(s for s, owner in origin.owners.items() if owner == ANN.user_id)
        del origin.owners[ann_session]  # the origin restarted that session away
        assert await _call(client, ANN) == ANN.user_id
        assert await _call(client, BOB) == BOB.user_id
    opened = [e["by"] for e in origin.seen if e["method"] == "initialize"]
    assert opened == [SERVICE_SUBJECT, ANN.user_id, BOB.user_id, ANN.user_id]


class _SlowToReopen(_Origin):
    """Once `gate` is set: a call in a session it no longer knows is refused only after a person's
    renewed handshake has reached `notifications/initialized`, which is held a moment, so the
    second of two concurrent calls hears its 404 in the middle of the first one's re-handshake."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = False
        self.refused = 0
        self.reopening = anyio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and self.gate:
            message: dict[str, Any] = await request.json()  # aiohttp keeps the body for the next read
            session = request.headers.get("mcp-session-id")
            if message.get("method") == _INITIALIZED and session is not None:
                self.reopening.set()
                await anyio.sleep(0.3)
            elif message.get("method") == "tools/call" and session is not None and session not in self.owners:
                self.refused += 1
                if self.refused == 2:
                    await self.reopening.wait()
        return await super().handle(request)


async def test_two_calls_that_find_their_persons_session_lost_leave_one_good_session(anyio_backend: str) -> None:
    origin = _SlowToReopen()
    async with _client(origin) as client:
        await _call(client, ANN)
        del origin.owners[next(s for s, owner in origin.owners.items() if owner == ANN.user_id)]
        origin.gate = True
        answers: list[str] = []

        async def call() -> None:
            answers.append(await _call(client, ANN))

        async with anyio.create_task_group() as calls:
            calls.start_soon(call)
            calls.start_soon(call)
        origin.gate = False
        assert answers == [ANN.user_id, ANN.user_id]
        assert await _call(client, ANN) == ANN.user_id  # and every later call
    last = origin.seen[-1]
    assert last["method"] == "tools/call" and origin.owners[last["session"]] == ANN.user_id
