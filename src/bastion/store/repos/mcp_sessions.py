"""What MCP sessions keep in the store: the key that seals their ids, and the sessions ended by DELETE.

`SqlSessionEnds` implements `bastion.mcp.sessions.SessionEnds`. Replicas poll it
with a mark: the database time of the newest end they have seen. Each poll
reads again the ends recorded in the `_LOOKBACK` before the mark, because an
end recorded by a transaction that began earlier may become visible later
(its `ended_at` is the transaction's start); a one-row insert that takes a
minute to commit is not expected.
"""

from __future__ import annotations

import base64
import secrets
import time
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from bastion.store.db import Database
from bastion.store.models import McpSessionEnd, Meta
from bastion.store.repos.tokens import get_meta
from bastion.store.tenancy import SYSTEM

__all__ = ["SESSION_KEY_META", "SqlSessionEnds", "session_sealing_key"]

SESSION_KEY_META = "mcp_session_key"
_LOOKBACK = 60.0


async def session_sealing_key(db: Database) -> bytes:
    """The stored session-sealing key; whichever replica asks first generates it."""
    async with db.session(SYSTEM) as session:
        stored = await get_meta(session, SESSION_KEY_META)
    if stored is None:
        fresh = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
        try:
            async with db.session(SYSTEM) as session:
                session.add(Meta(key=SESSION_KEY_META, value=fresh))
        except IntegrityError:
            pass  # another replica stored one between our read and our write: theirs is the key
        async with db.session(SYSTEM) as session:
            stored = await get_meta(session, SESSION_KEY_META)
    assert stored is not None  # written above, by us or by the replica that won
    return base64.urlsafe_b64decode(stored + "=" * (-len(stored) % 4))


class SqlSessionEnds:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, nonce: str, expires_at: float) -> None:
        try:
            async with self._db.session(SYSTEM) as session:
                # Ends whose ids have expired on their own are no longer worth keeping.
                await session.execute(delete(McpSessionEnd).where(McpSessionEnd.expires_at <= _at(time.time())))
                session.add(McpSessionEnd(nonce=nonce, expires_at=_at(expires_at)))
        except IntegrityError:
            pass  # two DELETEs of one session on two replicas: it is recorded once, which is enough

    async def since(self, mark: float | None) -> tuple[dict[str, float], float | None]:
        query = select(McpSessionEnd.nonce, McpSessionEnd.expires_at, McpSessionEnd.ended_at)
        if mark is None:
            query = query.where(McpSessionEnd.expires_at > _at(time.time()))
        else:
            query = query.where(McpSessionEnd.ended_at >= _at(mark - _LOOKBACK))
        async with self._db.session(SYSTEM) as session:
            rows = (await session.execute(query)).all()
        ended = {nonce: expires_at.timestamp() for nonce, expires_at, _ in rows}
        stamps = [ended_at.timestamp() for _, _, ended_at in rows] + ([] if mark is None else [mark])
        return ended, max(stamps, default=None)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
