"""Ids used up until they expire: a single-use assertion's `jti`, a signed-out session's id.

In the store rather than in a process, so every replica (and this one after a restart) refuses a
second use at once. Keys come from `bastion.identity.tokens.spent_key`: fixed length, and nothing
in the table is a usable id.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from bastion.store.db import Database
from bastion.store.models import SpentId
from bastion.store.tenancy import SYSTEM

__all__ = ["is_spent", "spend"]


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def spend(db: Database, key: str, expires_at: float, now: float) -> bool:
    """Mark `key` spent until `expires_at`; False when it was already, here or on another replica.
    One INSERT on the key: of two at once, one fails. Marks past their expiry are cleared after,
    in a transaction of their own (what they stood for is refused by its own expiry by then)."""
    try:
        async with db.session(SYSTEM) as session:
            session.add(SpentId(key=key, expires_at=_at(expires_at)))
    except IntegrityError:
        return False
    async with db.session(SYSTEM) as session:
        await session.execute(delete(SpentId).where(SpentId.expires_at <= _at(now)))
    return True


async def is_spent(db: Database, key: str) -> bool:
    async with db.session(SYSTEM) as session:
        return await session.scalar(select(SpentId.key).where(SpentId.key == key)) is not None
