"""`python -m bench.floor --port P --origin URL [--with validate,audit,uses]`: a relay as lean as
CPython allows, as a yardstick for Bastion's own cost.

Why: `make bench` judges Bastion's CPU per call against a fixed number (250 µs), while this
machine's speed moves by a factor of two from hour to hour. This process measures, in the same
run and under the same load, what a Python relay on this interpreter pays: uvloop, httptools on
both sides, one kept-alive origin connection per client connection, the request's body and
headers passed on as bytes and the reply passed back. Bare, it parses no JSON and checks nothing.

`--with` adds, one by one, parts every gateway with Bastion's guarantees must do per call, each
done by Bastion's own code or the library Bastion uses, with nothing around them:
- `validate`: the bearer token hashed and looked up; the body parsed (orjson), its JSON-RPC
  envelope and `tools/call` params validated with `mcp.types`, the origin's result validated
  with `mcp.types` and the reply encoded again;
- `audit`: two audit records per call (`bastion.store.repos.audit.AuditLog`: journal, shared
  `fdatasync`, the reply sent only once the second is durable; the chain in SQLite, in rounds);
- `uses`: one API-token use per call (`TokenUseWriter`, SQLite).
What it leaves out (policy stages, metrics, logs, sessions, protocol revisions, snapshots) is
measured elsewhere (`bench.pipeline`) or not at all: the result is a lower bound for Bastion.
Not a product path. Hand-written because that is the point: no framework's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httptools
import orjson
import uvicorn
import uvloop
from mcp import types

from bastion.http.asgi import Receive, Scope, Send, read_body, send_bytes
from bastion.http.server import CoalescingHttpToolsProtocol
from bastion.identity.token_rules import TokenUse
from bastion.identity.tokens import hash_token
from bastion.store.db import Database
from bastion.store.models import DEFAULT_TENANT
from bastion.store.repos import tokens
from bastion.store.repos.audit import AuditLog
from bastion.store.repos.token_uses import TokenUseWriter
from bastion.store.tenancy import SYSTEM
from bench.audit import call_record

__all__ = ["PARTS", "main"]

PARTS = ("validate", "audit", "uses")
# Hop-by-hop (RFC 9110 §7.6.1) and framing headers: the relay sets its own.
_DROPPED = frozenset({b"host", b"connection", b"keep-alive", b"content-length", b"transfer-encoding"})


class _Parts:
    """What `--with` turned on, and the state those parts need (a SQLite store, a known token)."""

    def __init__(self, names: set[str]) -> None:
        self.validate = "validate" in names
        self.audit: AuditLog | None = None
        self.uses: TokenUseWriter | None = None
        self.token_hashes: dict[str, str] = {}  # SHA-256 of the secret -> token id
        self._token_id = "floor"  # the token row's id once there is a store

    async def start(self, stack: AsyncExitStack, names: set[str], work: Path, token: str | None) -> None:
        if names & {"audit", "uses"}:  # a real store, and a real token row for the use log to name
            db = Database(f"sqlite+aiosqlite:///{work / 'floor.db'}")
            stack.push_async_callback(db.close)
            await db.migrate()
            async with db.session(SYSTEM) as session:
                user = await tokens.create_user(session, username="floor", password_hash="-", is_admin=False)
                expires = datetime.now(UTC) + timedelta(days=1)
                row, _ = await tokens.create_token(
                    session, user=user, name="floor", scopes=[], server_ids=[], expires_at=expires
                )
                self._token_id = row.id
            tasks = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tasks.cancel_scope.cancel)
            if "audit" in names:
                self.audit = AuditLog(db, work / "journal")
                tasks.start_soon(self.audit.run)
            if "uses" in names:
                self.uses = TokenUseWriter(db)
                tasks.start_soon(self.uses.run)
        if token is not None:
            self.token_hashes[hash_token(token)] = self._token_id

    def known(self, authorization: bytes | None) -> str | None:
        """The token id of a `Bearer` header, or None: with `validate`, an unknown token is refused."""
        if not self.validate:
            return self._token_id
        if authorization is None or not authorization.startswith(b"Bearer "):
            return None
        return self.token_hashes.get(hash_token(authorization[7:].decode("latin-1")))


class _Upstream(asyncio.Protocol):
    """One kept-alive origin connection: one request at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[bytes] = []
        self._body: list[bytes] = []
        self.reply: asyncio.Future[tuple[int, bytes, bytes]] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_exception(ConnectionError("the origin closed the connection"))

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in _DROPPED:
            self._headers.append(name + b": " + value + b"\r\n")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status, headers, body = self._parser.get_status_code(), b"".join(self._headers), b"".join(self._body)
        self._headers, self._body = [], []
        if self.reply is not None and not self.reply.done():
            self.reply.set_result((status, headers, body))


class _Relay:
    """A request's whole journey: the parts `--with` turned on, the origin's reply, the parts after."""

    def __init__(self, origin: tuple[str, int, bytes], parts: _Parts) -> None:
        self._host, self._port, path = origin
        self._head = b"POST %s HTTP/1.1\r\nhost: %s:%d\r\n" % (path, self._host.encode(), self._port)
        self._parts = parts
        self._idle: list[_Upstream] = []

    async def handle(self, headers: bytes, body: bytes, authorization: bytes | None) -> tuple[int, bytes, bytes]:
        started, parts = time.perf_counter(), self._parts
        token_id = parts.known(authorization)
        if token_id is None:
            return 401, b"", b""
        arguments: Any = None
        if parts.validate:
            message = orjson.loads(body)
            types.JSONRPCRequest.model_validate(message)
            params = types.CallToolRequestParams.model_validate(message["params"])
            arguments = params.arguments
            body = orjson.dumps(message)  # what Bastion sends on is its own encoding
        status, reply_headers, reply = await self._forward(headers, body)
        if parts.validate:
            answer = orjson.loads(reply)
            types.CallToolResult.model_validate(answer["result"])
            reply = orjson.dumps(answer)
        if parts.uses is not None:
            latency = (time.perf_counter() - started) * 1000
            use = TokenUse(token_id, time.time(), "POST", "/mcp", "127.0.0.1", "bench", 200, latency, None, True)
            parts.uses.record(use)
        if parts.audit is not None:
            parts.audit.record(DEFAULT_TENANT, call_record("upstream.call", started, arguments))
            await parts.audit.record(DEFAULT_TENANT, call_record("mcp.request", started, arguments)).wait()
        return status, reply_headers, reply

    async def _forward(self, headers: bytes, body: bytes) -> tuple[int, bytes, bytes]:
        upstream = self._idle.pop() if self._idle else None
        if upstream is None or upstream.transport is None or upstream.transport.is_closing():
            loop = asyncio.get_running_loop()
            _, upstream = await loop.create_connection(_Upstream, self._host, self._port)
        assert upstream.transport is not None
        upstream.reply = asyncio.get_running_loop().create_future()
        upstream.transport.write(self._head + headers + b"content-length: %d\r\n\r\n" % len(body) + body)
        answer = await upstream.reply
        self._idle.append(upstream)
        return answer


class _Client(asyncio.Protocol):
    """A client connection served straight from httptools' callbacks: no ASGI, no framework."""

    def __init__(self, relay: _Relay) -> None:
        self._relay = relay
        self._parser = httptools.HttpRequestParser(self)
        self._headers: list[bytes] = []
        self._authorization: bytes | None = None
        self._body: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"authorization":
            self._authorization = value
        if lowered not in _DROPPED:
            self._headers.append(name + b": " + value + b"\r\n")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        headers, body, authorization = b"".join(self._headers), b"".join(self._body), self._authorization
        self._headers, self._body, self._authorization = [], [], None
        asyncio.get_running_loop().create_task(self._answer(headers, body, authorization))

    async def _answer(self, headers: bytes, body: bytes, authorization: bytes | None) -> None:
        status, reply_headers, reply = await self._relay.handle(headers, body, authorization)
        if self.transport is not None and not self.transport.is_closing():
            head = b"HTTP/1.1 %d OK\r\n" % status + reply_headers + b"content-length: %d\r\n\r\n" % len(reply)
            self.transport.write(head + reply)


def _asgi(relay: _Relay) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The same relay as an ASGI app, for `--asgi`: what the ASGI server adds, measured apart."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(scope, receive, 1 << 20)
        kept = [(name, value) for name, value in scope["headers"] if name not in _DROPPED]
        headers = b"".join(name + b": " + value + b"\r\n" for name, value in kept)
        status, reply_headers, reply = await relay.handle(headers, body, dict(kept).get(b"authorization"))
        content_type = b"application/json"
        for line in reply_headers.split(b"\r\n"):
            if line.lower().startswith(b"content-type:"):
                content_type = line.split(b":", 1)[1].strip()
        await send_bytes(send, status, reply, content_type)

    return app


async def _serve(port: int, origin: str, names: set[str], token: str | None, asgi: bool) -> None:
    parsed = urlsplit(origin)
    target = (parsed.hostname or "127.0.0.1", parsed.port or 80, (parsed.path or "/").encode())
    parts = _Parts(names)
    relay = _Relay(target, parts)
    with tempfile.TemporaryDirectory(prefix="bastion-floor-") as work:
        async with AsyncExitStack() as stack:
            await parts.start(stack, names, Path(work), token)
            if asgi:  # as `bastion serve` runs uvicorn (bastion.cli.serve)
                config = uvicorn.Config(
                    _asgi(relay), host="127.0.0.1", port=port, server_header=False, log_config=None,
                    access_log=False, lifespan="off", http=CoalescingHttpToolsProtocol,
                )  # fmt: skip
                await uvicorn.Server(config).serve()
                return
            loop = asyncio.get_running_loop()
            server = await loop.create_server(lambda: _Client(relay), "127.0.0.1", port)
            async with server:
                await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="a relay as lean as CPython allows (bench yardstick)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--origin", required=True, help="the origin's MCP URL (http only)")
    parser.add_argument("--with", dest="parts", default="", help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--token", help="the bearer token `validate` accepts")
    parser.add_argument("--asgi", action="store_true", help="serve as an ASGI app under uvicorn, as Bastion does")
    args = parser.parse_args()
    names = {name for name in args.parts.split(",") if name}
    if names - set(PARTS):
        parser.error(f"unknown parts: {sorted(names - set(PARTS))}")
    uvloop.run(_serve(args.port, args.origin, names, args.token, args.asgi))


if __name__ == "__main__":
    main()
