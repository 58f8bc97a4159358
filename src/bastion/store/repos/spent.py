"""Ids used up until they expire: a single-use assertion's `jti`, a signed-out session's id.

In the store rather than in a process, so every replica (and this one after a restart) refuses a
second use at once. Keys come from `bastion.identity.tokens.spent_key`: fixed length, and nothing
in the table is a usable id.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bastion.errors import Unavailable
from bastion.store.db import Database
from bastion.store.models import SpentId
from bastion.store.tenancy import SYSTEM

__all__ = ["is_spent", "spend"]

log = structlog.get_logger(__name__)

# A mark outlives the expiry it is given by this much: the verifiers accept a token a little past
# its `exp` (30 s for JWTs from elsewhere, 5 s for Bastion's own), and the replica that clears
# marks may run ahead of the one that checks. Cleared at the expiry itself, a mark let a token
# presented in its leeway be used again and again.
_KEPT_PAST_EXPIRY = 300.0
# And at most this long: an `exp` a trusted issuer set centuries ahead is kept for a decade (a
# datetime cannot hold every number a JWT's `exp` can).
_KEPT_AT_MOST = 10 * 365 * 86400.0


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def spend(db: Database, key: str, expires_at: float, now: float) -> bool:
    """Mark `key` spent until past `expires_at` (the id's own expiry); False when it was already,
    here or on another replica. One INSERT on the key: of two at once, one fails. Unavailable (503)
    when the store does not answer: nothing was marked, so a retry is not a replay. Marks well past
    their expiry are cleared after, as housekeeping that never fails the caller."""
    until = min(expires_at + _KEPT_PAST_EXPIRY, now + _KEPT_AT_MOST)
    try:
        async with db.session(SYSTEM) as session:
            session.add(SpentId(key=key, expires_at=_at(until)))
    except IntegrityError:
        return False
    except SQLAlchemyError as exc:
        raise Unavailable("the store did not answer; nothing was used up, retry shortly") from exc
    try:
        async with db.session(SYSTEM) as session:
            await session.execute(delete(SpentId).where(SpentId.expires_at <= _at(now)))
    except SQLAlchemyError as exc:  # the next spend clears them
        log.warning("spent_ids_not_cleared", error=type(exc).__name__)
    return True


async def is_spent(db: Database, key: str) -> bool:
    """Whether `key` is spent; Unavailable (503) when the store does not answer: never a guess."""
    try:
        async with db.session(SYSTEM) as session:
            return await session.scalar(select(SpentId.key).where(SpentId.key == key)) is not None
    except SQLAlchemyError as exc:
        raise Unavailable("the store did not answer whether this session was signed out; retry shortly") from exc
