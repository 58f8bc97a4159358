"""Password logins for people: argon2id checks, lockout, and one event per attempt.

Used by the identity plane's login page and the admin API's /api/login alike. The lockout's two
bounds are `bastion.identity.lockout`'s: an attempt is counted against its name and network
before its password is checked (so concurrent guesses cannot all slip in before the first
failure is written), and that count is cleared when it succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import anyio
import structlog
from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from sqlalchemy import update

from bastion.errors import AccountLocked, Unauthenticated
from bastion.http.client_ip import address_group
from bastion.identity.lockout import LockoutPolicy
from bastion.identity.passwords import hash_password, verify_password
from bastion.pipeline.windows import LimiterStorage, limiter_storage, spend
from bastion.store.db import Database
from bastion.store.models import User
from bastion.store.repos.tokens import user_by_name
from bastion.store.repos.users import record_login
from bastion.store.tenancy import SYSTEM

__all__ = ["REFUSED", "Attempt", "Logins"]

log = structlog.get_logger(__name__)


# One answer for a wrong password, an unknown name and a locked account alike.
REFUSED = "unknown user or wrong password (or an account locked after repeated failed logins: retry later)"


@cache
def _dummy_hash() -> str:
    # Verified against for unknown users, so timing does not reveal which names exist.
    return hash_password("not a real password, only for constant-time refusals")


@dataclass(frozen=True, slots=True)
class Attempt:
    username: str
    password: str
    ip: str = ""
    user_agent: str = ""


class Logins:
    def __init__(self, db: Database, policy: LockoutPolicy, storage: LimiterStorage | None = None) -> None:
        self._db = db
        self._policy = policy
        # Attempts per name and network: in the limiter's storage (Redis across replicas).
        self._attempts = (storage or limiter_storage(None, "", 1.0)).moving()
        self._item = RateLimitItemPerSecond(policy.threshold, max(1, round(policy.base_seconds)))

    async def verify(self, attempt: Attempt) -> User:
        """The user whose password this is; AccountLocked (this network, this name: wait) or
        Unauthenticated otherwise, the same for a wrong password, an unknown name and a locked
        account (an answer of its own, or a faster one, would tell which names exist)."""
        now = datetime.now(UTC)
        async with self._db.session(SYSTEM) as session:
            user = await user_by_name(session, attempt.username)
        # Counted before anything is checked, for a name that exists or not alike.
        key = ("sign-in-attempts", attempt.username.casefold(), address_group(attempt.ip))
        wait = await spend(self._attempts, self._item, *key, counted="sign-in attempts")
        if wait is not None:
            await self._record(attempt, user, "throttled")
            raise AccountLocked(
                f"sign-in with this name is locked for your network after repeated failed logins; retry in {wait} s",
                retry_after=wait,
            )
        stored = user.password_hash if user is not None and user.provider is None else _dummy_hash()
        # Argon2 costs ~100 ms of CPU by design: off the event loop.
        matches = await anyio.to_thread.run_sync(verify_password, stored, attempt.password)
        if user is not None and user.locked_until is not None and user.locked_until > now:
            await self._record(attempt, user, "locked")  # not a failure: the password was not asked
            raise Unauthenticated(REFUSED)
        if user is None or user.provider is not None or not matches:
            await self._failed(attempt, user, now)
            raise Unauthenticated(REFUSED)
        try:
            await self._attempts.clear(self._item, *key)
        except StorageError:  # the window lapses by itself; the person is signed in all the same
            log.warning("sign_in_attempts_not_cleared")
        async with self._db.session(SYSTEM) as session:
            row = await session.get(User, user.id)
            if row is not None:
                row.failed_logins, row.locked_until = 0, None
        await self._record(attempt, user, "success")
        return user

    async def _failed(self, attempt: Attempt, user: User | None, now: datetime) -> None:
        outcome = "failure"
        if user is not None:
            async with self._db.session(SYSTEM) as session:
                # Counted by the database (`failed_logins + 1`), not read then written: failures at
                # once on two replicas are two.
                failures = await session.scalar(
                    update(User)
                    .where(User.id == user.id)
                    .values(failed_logins=User.failed_logins + 1)
                    .returning(User.failed_logins)
                )
                seconds = None if failures is None else self._policy.lock_seconds(failures)
                if seconds is not None:
                    until = now + timedelta(seconds=seconds)
                    await session.execute(update(User).where(User.id == user.id).values(locked_until=until))
                    outcome = "lockout"
        await self._record(attempt, user, outcome)

    async def _record(self, attempt: Attempt, user: User | None, outcome: str) -> None:
        async with self._db.session(SYSTEM) as session:
            await record_login(
                session,
                username=attempt.username,
                user_id=None if user is None else user.id,
                outcome=outcome,
                ip=attempt.ip,
                user_agent=attempt.user_agent,
            )
        log.info("login", outcome=outcome, user=attempt.username[:64], ip=attempt.ip)
