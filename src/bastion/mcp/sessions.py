"""MCP sessions (handshake revisions): `Mcp-Session-Id` bound to the principal that opened it.

A session never authenticates anything: every request is verified on its own,
and the session must then belong to the same owner (the token; for OAuth, the
user and client).

Any replica serves any session, with no sticky load balancer: the id is sealed
(`session_seal`) over what a replica needs to know (protocol version, the
client's capability names, issue time) and bound to the server and the owner.
A replica that meets an id it holds no state for opens the seal and starts
fresh local state. What stays on one replica is what lives in its memory: the
GET (or listen) stream and its notifications, the cancel scopes of requests in
flight, and server-to-client requests awaiting the client's reply. A
`notifications/cancelled` or a reply that lands on another replica is dropped
there, so clients that use those must reach the replica running the request.

Lifetimes: every replica refuses an id `lifetime` seconds after it was issued
(the issue time is sealed in it). The idle timeout only frees one replica's
local state, since no replica sees the session's use on the others.

Local state is a cache of the seals, kept in the order sessions were last used
and bounded (`max_local`): past the bound, the least recently used sessions
that hold nothing (no stream, no request in flight, no question waiting) are
freed, and reopen from their seal when used again. So a client that opens
sessions by the thousand (each `initialize` makes one) costs this replica a
bounded table, and making or sweeping one looks at the oldest sessions only:
those with an open stream (stepped over), then the few it frees.

DELETE records the session's nonce in the store (`SessionEnds`). Each replica
reads the recorded ends at start and then on every poll, so a deleted id is
refused at once on the replica that deleted it and within one poll interval on
the others. The trade-off: no store read per request (that would end it
everywhere at once, at a round trip on every request). Records last only until
the id would have expired anyway, so the table and each replica's copy are
bounded by the DELETE rate times the lifetime. Closing only the local state
(server unpublished, token revoked) records nothing: every request checks the
token and the server first, so the id is of no use while access is withdrawn.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import mcp_types as mt
import orjson
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from bastion.errors import UpstreamRejected
from bastion.governance.permissions import Grants
from bastion.mcp.session_seal import Opened, SessionSeal

__all__ = ["LISTEN_FILTER_KEYS", "SUBSCRIPTION_ID_META_KEY", "Session", "SessionEnds", "SessionStore"]

log = structlog.get_logger(__name__)

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
    # The names of the capabilities the client declared, each mapped to {}: the sealed id
    # carries names only, and every replica must see the same session.
    client_capabilities: dict[str, Any]
    nonce: str  # unique per session (from its seal): what a DELETE records
    expires_at: float  # POSIX seconds: refused on every replica from then on
    last_seen: float = field(default_factory=time.monotonic)
    in_flight: dict[Any, anyio.CancelScope] = field(default_factory=dict)
    # 2026-07-28 `subscriptions/listen`: (request id, filter); None for a handshake-era session.
    subscription: tuple[Any, dict[str, Any]] | None = None
    # The GET (or listen) stream: server-to-client notifications.
    outbox: MemoryObjectSendStream[bytes] | None = None
    inbox: MemoryObjectReceiveStream[bytes] | None = None
    # The OAuth access token (its id) that opened the stream: revoking it ends the stream (see
    # `ChangeNotifier`). None for an API token, whose revocation ends the whole session.
    stream_credential: str | None = None
    # Server-to-client requests awaiting the client's reply, by the id Bastion gave them.
    asks: dict[str, _Ask] = field(default_factory=dict)
    asked: int = 0
    # The limit of the token its last request came with (an OAuth service client's; an API
    # token's is in the snapshot): what the lists it is told changed are filtered by.
    limit: Grants | None = None

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
            with anyio.move_on_after(ASK_TIMEOUT_SECONDS):
                await pending.done.wait()
        finally:
            self.asks.pop(request_id, None)
        if not pending.done.is_set():  # the call's answer says so (a TimeoutError broke its stream)
            raise UpstreamRejected(
                mt.REQUEST_TIMEOUT, f"no answer to {method} within {ASK_TIMEOUT_SECONDS:g} s", from_origin=False
            )
        return pending.reply

    def answer(self, message: dict[str, Any]) -> None:
        """A reply the client POSTed: wake the request waiting for it (unknown ids are dropped)."""
        request_id = message.get("id")
        pending = self.asks.get(request_id) if isinstance(request_id, str) else None  # Bastion's ids: strings
        if pending is not None and not pending.done.is_set():
            pending.reply = message
            pending.done.set()

    @property
    def streaming(self) -> bool:
        """A GET (or listen) stream is open on this replica: the client is waiting, not idle."""
        return self.outbox is not None and self.outbox.statistics().open_receive_streams > 0

    def idle(self, now: float, limit: float) -> bool:
        """Nothing under way (no stream, no call, no question waiting for the client) for `limit`
        seconds. A call running longer than the limit (or a person taking that long to answer)
        is not idleness: closing the session then cancelled it."""
        return self.holds_nothing and now - self.last_seen > limit

    @property
    def holds_nothing(self) -> bool:
        """Freeing the local state loses nothing: the seal reopens the rest on the next request."""
        return not self.streaming and not self.in_flight and not self.asks

    def open_stream(self, credential: str | None = None) -> MemoryObjectReceiveStream[bytes]:
        self.close_stream()  # the spec allows one stream; a new GET replaces the old one
        self.outbox, self.inbox = anyio.create_memory_object_stream[bytes](_STREAM_BUFFER)
        self.stream_credential = credential
        return self.inbox

    def close_stream(self) -> None:
        """End the open stream, if any: its response ends once what is queued is sent."""
        if self.outbox is not None:
            self.outbox.close()

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


class SessionEnds(Protocol):
    """Sessions ended by DELETE, shared by every replica (`store/repos/mcp_sessions.py` keeps them)."""

    async def record(self, nonce: str, expires_at: float) -> None:
        """Record that session `nonce` ended; the record may go once `expires_at` has passed."""
        ...

    async def since(self, mark: float | None) -> tuple[dict[str, float], float | None]:
        """Ends recorded after `mark` (None: all unexpired) as nonce → expires_at, and the next mark."""
        ...


class SessionStore:
    def __init__(
        self, *, idle_seconds: float, lifetime_seconds: float, ends: SessionEnds, max_local: int = 10_000
    ) -> None:
        self._sessions: dict[str, Session] = {}  # least recently used first (see the module's docstring)
        self._max_local = max_local
        self._idle = idle_seconds
        self._lifetime = lifetime_seconds
        self._ends = ends
        self._ended: dict[str, float] = {}  # nonce → when its id expires anyway
        self._mark: float | None = None
        self._seal: SessionSeal | None = None

    async def start(self, keys: Sequence[bytes]) -> None:
        """Take the sealing keys (the first seals, all open) and the ends recorded so far."""
        self._seal = SessionSeal(keys)
        await self.sync_ends()

    def count(self) -> int:
        """MCP sessions open on this replica."""
        return len(self._sessions)

    async def follow_ends(self, interval: float) -> None:
        """Run forever: pick up the sessions other replicas ended."""
        while True:
            await anyio.sleep(interval)
            try:
                await self.sync_ends()
            except Exception as exc:  # top of a background task: the store may be briefly
                # unreachable; the ends seen so far still hold, and the next tick catches up.
                log.warning("session_ends_poll_failed", error=type(exc).__name__)

    async def sync_ends(self) -> None:
        ended, self._mark = await self._ends.since(self._mark)
        fresh = ended.keys() - self._ended.keys()
        self._ended.update(ended)
        now = time.time()
        for nonce in [n for n, until in self._ended.items() if until <= now]:
            del self._ended[nonce]
        for session in [s for s in self._sessions.values() if s.nonce in fresh]:
            self.close(session.id)

    async def terminate(self, session: Session) -> None:
        """DELETE: the session ends here at once, and on the other replicas at their next poll."""
        # Recorded first: if the store refuses, the session lives on everywhere, consistently.
        await self._ends.record(session.nonce, session.expires_at)
        self._ended[session.nonce] = session.expires_at
        self.close(session.id)

    def create(
        self,
        *,
        server_id: str,
        token_id: str,
        protocol_version: str,
        capabilities: dict[str, Any],
        subscription: tuple[Any, dict[str, Any]] | None = None,
        limit: Grants | None = None,
    ) -> Session:
        self._expire()
        session_id, opened = self._sealer().seal(
            server_id=server_id,
            owner=token_id,
            protocol_version=protocol_version,
            capabilities=capabilities,
            issued_at=int(time.time()),
        )
        session = self._local(session_id, opened, server_id, token_id)
        session.subscription, session.limit = subscription, limit
        return session

    def get(self, session_id: str, *, server_id: str, token_id: str) -> Session | None:
        """The session, if it is alive for this server and this owner; otherwise None (callers say 404).

        An id this replica holds no state for (opened on another replica, or idle here) is
        opened from its seal, with fresh local state.
        """
        session = self._sessions.get(session_id)
        if session is not None and (session.server_id != server_id or session.token_id != token_id):
            return None
        if session is not None and (session.expires_at <= time.time() or session.idle(time.monotonic(), self._idle)):
            # Idle frees local state only: the client may have been busy on other replicas.
            self.close(session_id)
            session = None
        if session is None:
            session = self._open(session_id, server_id, token_id)
        elif next(reversed(self._sessions)) != session_id:  # now the most recently used
            del self._sessions[session_id]
            self._sessions[session_id] = session
        if session is not None:
            session.last_seen = time.monotonic()
        return session

    def close(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        for scope in session.in_flight.values():
            scope.cancel()
        session.close_stream()

    def of_server(self, server_id: str) -> list[Session]:
        return [s for s in self._sessions.values() if s.server_id == server_id]

    def all(self) -> list[Session]:
        """This replica's sessions (a copy: closing one while going through them is safe)."""
        return list(self._sessions.values())

    def oauth_streams(self) -> dict[str, list[Session]]:
        """The open streams opened with an OAuth access token, by that token's id."""
        held: dict[str, list[Session]] = {}
        for session in self._sessions.values():
            if session.stream_credential is not None and session.streaming:
                held.setdefault(session.stream_credential, []).append(session)
        return held

    def drop_token(self, token_ids: set[str]) -> None:
        """Close every session opened by a token that is no longer valid."""
        for session in [s for s in self._sessions.values() if s.token_id in token_ids]:
            self.close(session.id)

    def _open(self, session_id: str, server_id: str, owner: str) -> Session | None:
        opened = self._sealer().open(session_id, server_id=server_id, owner=owner)
        if opened is None or opened.nonce in self._ended or opened.issued_at + self._lifetime <= time.time():
            return None
        return self._local(session_id, opened, server_id, owner)

    def _local(self, session_id: str, opened: Opened, server_id: str, owner: str) -> Session:
        session = Session(
            id=session_id,
            server_id=server_id,
            token_id=owner,
            protocol_version=opened.protocol_version,
            client_capabilities={name: {} for name in sorted(opened.capabilities)},
            nonce=opened.nonce,
            expires_at=opened.issued_at + self._lifetime,
        )
        self._sessions[session_id] = session
        if len(self._sessions) > self._max_local:
            self._shed(len(self._sessions) - self._max_local, keep=session_id)
        return session

    def _shed(self, count: int, *, keep: str) -> None:
        """Free the local state of the `count` least recently used sessions that hold nothing, never
        `keep` (the one being added, which its caller is about to use). With every other session
        holding something, the table stays above the bound: each of those is an open connection."""
        freed: list[str] = []
        for session in self._sessions.values():
            if len(freed) == count:
                break
            if session.holds_nothing and session.id != keep:
                freed.append(session.id)
        for session_id in freed:
            self.close(session_id)

    def _sealer(self) -> SessionSeal:
        if self._seal is None:
            raise RuntimeError("SessionStore.start() has not run: there is no sealing key yet")
        return self._seal

    def _expire(self) -> None:
        """Free idle sessions, oldest first: the first one found used lately ends the sweep (every later
        one was used more recently). One with an open stream, a call or a question under way is never
        idle, and is stepped over."""
        now, wall = time.monotonic(), time.time()
        done: list[str] = []
        for session in self._sessions.values():
            if session.idle(now, self._idle) or session.expires_at <= wall:
                done.append(session.id)
            elif session.holds_nothing:
                break  # used lately: so was every later one (one with a stream or a call is stepped over)
        for session_id in done:
            self.close(session_id)
