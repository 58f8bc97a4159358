"""Local user accounts: create (under the password policy), list, unlock."""

from __future__ import annotations

import anyio
from sqlalchemy import select

from bastion.admin.schemas import UserIn, UserOut
from bastion.errors import NotFound
from bastion.identity.passwords import PasswordPolicy, hash_password
from bastion.store.db import Database, bump_epoch
from bastion.store.models import User
from bastion.store.repos import tokens

__all__ = ["Users"]


class Users:
    def __init__(self, db: Database, policy: PasswordPolicy, *, time_cost: int, memory_kib: int) -> None:
        self._db = db
        self._policy = policy
        self._time_cost = time_cost
        self._memory_kib = memory_kib

    async def create(self, data: UserIn) -> UserOut:
        self._policy.check(data.password, username=data.username)
        digest = await anyio.to_thread.run_sync(
            lambda: hash_password(data.password, time_cost=self._time_cost, memory_kib=self._memory_kib)
        )
        async with self._db.session() as session:
            user = await tokens.create_user(
                session, username=data.username, password_hash=digest, is_admin=data.is_admin
            )
            await bump_epoch(session)
        return UserOut.model_validate(user, from_attributes=True)

    async def list(self) -> list[UserOut]:
        async with self._db.session() as session:
            rows = await session.scalars(select(User).order_by(User.username))
            return [UserOut.model_validate(user, from_attributes=True) for user in rows]

    async def unlock(self, user_id: str) -> UserOut:
        async with self._db.session() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound(f"no user {user_id!r}")
            user.failed_logins, user.locked_until = 0, None
            return UserOut.model_validate(user, from_attributes=True)
