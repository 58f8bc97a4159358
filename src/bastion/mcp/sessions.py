"""MCP sessions (handshake revisions): `Mcp-Session-Id` bound to the principal that opened it.

A session never authenticates anything: every request is verified on its own,
and the session must then belong to the same token. Session ids are 192 bits
from the CSPRNG.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["LISTEN_FILTER_KEYS", "SUBSCRIPTION_ID_META_KEY", "Session", "SessionStore"]

_STREAM_BUFFER = 64
ASK_TIMEOUT_SECONDS = 300.0  # a person answers an elicitation: minutes, not milliseconds
SUBSCRIPTION_ID_META_KEY = "io.modelcontextprotocol/subscriptionId"
# notification method → the 2026-07-28 subscription filter key that opts in to it
_FILTER_KEYS = {
    "notifications/tools/list_changed": "toolsListChanged",
    "notifications/prompts/list_changed": "promptsListChanged",
    "notifications/resources/list_changed": "resourcesListChanged",
}
LISTEN_FILTER_KEYS = frozenset(_FILTER_KEYS.values())  # what a listen stream can be granted here


@dataclass(eq=False)
class Session:
    id: str
    server_id: str
    token_id: str
    protocol_version: str
    client_capabilities: dict[str, Any]
    last_seen: float = field(default_factory=time.monotonic)
    in_flight: dict[Any, anyio.CancelScope] = field(default_factory=dict)
    # 2026-07-28 `subscriptions/listen`: (request id, filter); None for a handshake-era session.
    subscription: tuple[Any, dict[str, Any]] | None = None
    # The GET (or listen) stream: server-to-client notifications.
    outbox: MemoryObjectSendStream[bytes] | None = None
    inbox: MemoryObjectReceiveStream[bytes] | None = None
    # Server-to-client requests awaiting the client's reply, by the id Bastion gave them.
    asks: dict[str, _Ask] = field(default_factory=dict)
    asked: int = 0

    @property
    def can_elicit(self) -> bool:
        return "elicitation" in self.client_capabilities

    async def ask(
        self, method: str, params: dict[str, Any], emit: Callable[[bytes], Awaitable[None]]
    ) -> dict[str, Any]:
        """Send a request to the client through `emit` and wait for its reply (its POSTed response)."""
        self.asked += 1
        request_id = f"bastion-{self.asked}"
        pending = self.asks[request_id] = _Ask()
        try:
            await emit(orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
            with anyio.fail_after(ASK_TIMEOUT_SECONDS):
                await pending.done.wait()
        finally:
            self.asks.pop(request_id, None)
        return pending.reply

    def answer(self, message: dict[str, Any]) -> None:
        """A reply the client POSTed: wake the request waiting for it (unknown ids are dropped)."""
        pending = self.asks.get(message.get("id"))  # type: ignore[arg-type]  # any JSON id
        if pending is not None and not pending.done.is_set():
            pending.reply = message
            pending.done.set()

    def open_stream(self) -> MemoryObjectReceiveStream[bytes]:
        if self.outbox is not None:
            self.outbox.close()  # the spec allows one stream; a new GET replaces the old one
        self.outbox, self.inbox = anyio.create_memory_object_stream[bytes](_STREAM_BUFFER)
        return self.inbox

    def notify(self, method: str) -> None:
        """Queue a parameterless notification, in this session's era's shape and filter."""
        if self.subscription is None:
            self.push(orjson.dumps({"jsonrpc": "2.0", "method": method}))
            return
        request_id, wanted = self.subscription
        if wanted.get(_FILTER_KEYS.get(method, "")):
            params = {"_meta": {SUBSCRIPTION_ID_META_KEY: request_id}}
            self.push(orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params}))

    def push(self, message: bytes) -> None:
        """Queue a notification for the GET stream; dropped if none is open or it is full."""
        if self.outbox is None:
            return
        try:
            self.outbox.send_nowait(message)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


@dataclass(eq=False)
class _Ask:
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: dict[str, Any] = field(default_factory=dict)


class SessionStore:
    def __init__(self, idle_seconds: float) -> None:
        self._sessions: dict[str, Session] = {}
        self._idle = idle_seconds

    def create(
        self,
        *,
        server_id: str,
        token_id: str,
        protocol_version: str,
        capabilities: dict[str, Any],
        subscription: tuple[Any, dict[str, Any]] | None = None,
    ) -> Session:
        self._expire()
        session = Session(
            id=secrets.token_urlsafe(24),
            server_id=server_id,
            token_id=token_id,
            protocol_version=protocol_version,
            client_capabilities=capabilities,
            subscription=subscription,
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str, *, server_id: str, token_id: str) -> Session | None:
        """The session, if it exists for this server and this token; otherwise None (callers say 404)."""
        session = self._sessions.get(session_id)
        if session is None or session.server_id != server_id or session.token_id != token_id:
            return None
        if time.monotonic() - session.last_seen > self._idle:
            self.close(session_id)
            return None
        session.last_seen = time.monotonic()
        return session

    def close(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        for scope in session.in_flight.values():
            scope.cancel()
        if session.outbox is not None:
            session.outbox.close()

    def of_server(self, server_id: str) -> list[Session]:
        return [s for s in self._sessions.values() if s.server_id == server_id]

    def drop_token(self, token_ids: set[str]) -> None:
        """Close every session opened by a token that is no longer valid."""
        for session in [s for s in self._sessions.values() if s.token_id in token_ids]:
            self.close(session.id)

    def _expire(self) -> None:
        now = time.monotonic()
        for session in [s for s in self._sessions.values() if now - s.last_seen > self._idle]:
            self.close(session.id)
