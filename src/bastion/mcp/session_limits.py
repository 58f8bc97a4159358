"""What one caller may hold of the MCP endpoint's session machinery: sessions opened per window
(each `initialize`, each 2026-07-28 `subscriptions/listen`) per person, and notification streams
(GET, listen) held open per token on one replica. A call answered as an event stream (progress,
a question for the person) holds its connection too, for as long as the call runs; those are
bounded by the calls' own limits (rate limits, timeouts), not here.

Why both: a session costs its replica a bounded cache entry (`SessionStore`), but its DELETE is
remembered on every replica for the session's lifetime, so the number a person may open is what
bounds that table; and each open stream is a connection held for as long as the client likes.
The window is counted in the limiter's storage (Redis across replicas: one budget), the streams
where they are held.
"""

from __future__ import annotations

from limits import RateLimitItem, parse

from bastion.errors import TooManyRequests
from bastion.identity.principal import Principal
from bastion.mcp.sessions import Session, SessionStore
from bastion.pipeline.windows import LimiterStorage, Windows, spend

__all__ = ["SessionLimits"]

# A client that lost a stream without the server noticing retries within the next keep-alive.
_STREAM_RETRY_SECONDS = 30


class SessionLimits:
    def __init__(self, opened: str, streams_per_token: int, storage: LimiterStorage) -> None:
        """`opened`: sessions a person may open per window, in the `limits` notation ("120/minute");
        `streams_per_token`: notification streams one token may hold open on this replica."""
        self._opened: RateLimitItem = parse(opened)
        self._windows: Windows = storage.moving()
        self._streams = streams_per_token

    async def opening(self, principal: Principal) -> None:
        """Count a session `principal`'s person opens; TooManyRequests past the window's budget."""
        counted = "MCP sessions opened"
        retry_after = await spend(self._windows, self._opened, "mcp-sessions", principal.user_id, counted=counted)
        if retry_after is not None:
            raise TooManyRequests(
                f"too many MCP sessions opened: at most {self._opened} per person; reuse an open session "
                f"(its Mcp-Session-Id) or retry in {retry_after} s",
                retry_after=retry_after,
            )

    def streaming(self, sessions: SessionStore, owner: str, replacing: Session | None = None) -> None:
        """Before a stream opens for `owner` (a session's token): TooManyRequests when it already
        holds the most it may here. A session's new GET replaces its own stream (`replacing`),
        which does not count."""
        held = sum(1 for s in sessions.all() if s.token_id == owner and s.streaming and s is not replacing)
        if held >= self._streams:
            raise TooManyRequests(
                f"this token holds {held} open MCP notification streams here, the most it may: "
                "close one (or end its session with DELETE) before opening another",
                retry_after=_STREAM_RETRY_SECONDS,
            )
