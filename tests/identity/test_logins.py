"""Password sign-in's lockout: per name and client network before the password is checked, per
account after many failures in a row from anywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from sqlalchemy import select

from bastion.errors import AccountLocked, Unauthenticated
from bastion.identity.lockout import LockoutPolicy
from bastion.identity.passwords import hash_password
from bastion.logins import REFUSED, Attempt, Logins
from bastion.store.db import Database
from bastion.store.models import LoginEvent, User
from bastion.store.repos.tokens import create_user
from bastion.store.tenancy import SYSTEM

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
STRANGER, OWNER = "203.0.113.7", "2001:db8:5:6::1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/logins.db")
    await database.migrate()
    async with database.session(SYSTEM) as session:
        await create_user(
            session, username="ann", password_hash=hash_password(PASSWORD, time_cost=1, memory_kib=8192), is_admin=True
        )
    try:
        yield database
    finally:
        await database.close()


async def _outcome(logins: Logins, name: str, password: str, ip: str) -> str:
    try:
        await logins.verify(Attempt(name, password, ip=ip))
    except AccountLocked as exc:
        return f"locked: {exc.message}"
    except Unauthenticated as exc:
        return exc.message
    return "signed in"


async def test_a_stranger_guessing_from_one_network_does_not_lock_the_owner_out_elsewhere(db: Database) -> None:
    logins = Logins(db, LockoutPolicy(threshold=3, base_seconds=600, account_threshold=100))
    guesses = [await _outcome(logins, "ann", f"guess {n}", STRANGER) for n in range(5)]
    assert guesses[:3] == [REFUSED] * 3
    assert all(g.startswith("locked: sign-in with this name is locked for your network") for g in guesses[3:])
    assert await _outcome(logins, "ann", PASSWORD, STRANGER) != "signed in"  # not from there
    assert await _outcome(logins, "ann", PASSWORD, OWNER) == "signed in"  # the owner, elsewhere
    async with db.session(SYSTEM) as session:
        ann = await session.scalar(select(User).where(User.username == "ann"))
        assert ann is not None and ann.locked_until is None and ann.failed_logins == 0


async def test_a_name_that_does_not_exist_is_answered_exactly_like_one_that_does(db: Database) -> None:
    logins = Logins(db, LockoutPolicy(threshold=3, base_seconds=600, account_threshold=100))
    known = [await _outcome(logins, "ann", f"guess {n}", STRANGER) for n in range(5)]
    unknown = [await _outcome(logins, "nobody", f"guess {n}", STRANGER) for n in range(5)]
    assert known == unknown
    async with db.session(SYSTEM) as session:
        outcomes = [e.outcome for e in await session.scalars(select(LoginEvent).order_by(LoginEvent.created_at))]
    assert outcomes == (["failure"] * 3 + ["throttled"] * 2) * 2


async def test_concurrent_guesses_are_counted_before_any_is_checked(db: Database) -> None:
    """Twenty guesses at once: only the threshold's worth reach the password check (each read the
    lock as open while the first was still being checked, before)."""
    logins = Logins(db, LockoutPolicy(threshold=5, base_seconds=600, account_threshold=100))
    results: list[str] = []

    async def guess(n: int) -> None:
        results.append(await _outcome(logins, "ann", f"guess {n}", STRANGER))

    async with anyio.create_task_group() as tasks:
        for n in range(20):
            tasks.start_soon(guess, n)
    assert results.count(REFUSED) == 5
    assert sum(r.startswith("locked:") for r in results) == 15
    async with db.session(SYSTEM) as session:
        ann = await session.scalar(select(User).where(User.username == "ann"))
        assert ann is not None and ann.failed_logins == 5  # each failure counted, none lost


async def test_many_failures_in_a_row_from_anywhere_lock_the_account_itself(db: Database) -> None:
    """The lock is answered as a wrong password is, for the right one too (an answer of its own
    would tell the name exists), and attempts while it holds are no failures: keeping the account
    locked takes as many failures again after it ends, not one."""
    logins = Logins(db, LockoutPolicy(threshold=2, base_seconds=600, account_threshold=4))
    networks = ["198.51.100.1", "198.51.100.2", "2001:db8:7::1", "2001:db8:8::1"]
    for n, network in enumerate(networks):
        assert await _outcome(logins, "ann", f"guess {n}", network) == REFUSED
    assert await _outcome(logins, "ann", PASSWORD, OWNER) == REFUSED
    assert await _outcome(logins, "nobody", PASSWORD, OWNER) == REFUSED
    async with db.session(SYSTEM) as session:
        ann = await session.scalar(select(User).where(User.username == "ann"))
        assert ann is not None and ann.failed_logins == 4 and ann.locked_until is not None
        ann.locked_until = None  # the lock ends
    assert await _outcome(logins, "ann", "one more guess", "203.0.113.50") == REFUSED
    async with db.session(SYSTEM) as session:
        ann = await session.scalar(select(User).where(User.username == "ann"))
        assert ann is not None and ann.failed_logins == 5 and ann.locked_until is None  # not locked again
    assert await _outcome(logins, "ann", PASSWORD, OWNER) == "signed in"
    outcomes = [await _outcome(logins, "ann", f"guess {n}", f"198.51.100.{10 + n}") for n in range(4)]
    assert outcomes == [REFUSED] * 4
    async with db.session(SYSTEM) as session:
        ann = await session.scalar(select(User).where(User.username == "ann"))
        assert ann is not None and ann.failed_logins == 4 and ann.locked_until is not None  # counted anew
