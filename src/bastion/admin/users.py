"""Users of a tenant: create (under the password policy), list, unlock, assign roles and teams."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.admin.actor import Actor
from bastion.admin.schemas import UserIn, UserOut, UserPatch
from bastion.bus import Bus, ChangeEvent
from bastion.errors import BadRequest, Forbidden, NotFound
from bastion.governance.permissions import BUILTIN_ROLES, PLATFORM_ADMIN, Grants, parse_permissions
from bastion.identity.passwords import PasswordPolicy, hash_password
from bastion.store.db import Database, bump_epoch
from bastion.store.models import User
from bastion.store.repos import teams, tokens

__all__ = ["Users", "check_roles"]


async def check_roles(session: AsyncSession, actor: Actor, roles: Sequence[str]) -> list[str]:
    """Roles that exist in the actor's tenant (built-in or custom), none granting more than the actor
    holds: whoever manages users cannot hand out (and so take) more power than their own."""
    custom = {role.name: parse_permissions(role.permissions) for role in await teams.custom_roles(session)}
    unknown = [r for r in roles if r not in BUILTIN_ROLES and r not in custom]
    if unknown:
        raise BadRequest(f"unknown roles: {', '.join(unknown)} (built-in: {', '.join(BUILTIN_ROLES)})")
    if PLATFORM_ADMIN in roles and not actor.may("tenants:manage"):
        raise Forbidden("only a platform administrator may grant platform-admin")
    if actor.member is not None:  # the operator (CLI) holds everything
        held = actor.member.grants
        for role in roles:
            beyond = {pair for pair in Grants.of_roles([role], custom).pairs if not held.covers(pair)}
            if beyond:
                shown = ", ".join(sorted(a if t == "*" else f"{a}@{t}" for a, t in beyond)[:5])
                raise Forbidden(f"role {role!r} grants what you do not hold ({shown}): you cannot grant it")
    return list(dict.fromkeys(roles))


class Users:
    def __init__(self, db: Database, bus: Bus, policy: PasswordPolicy, *, time_cost: int, memory_kib: int) -> None:
        self._db = db
        self._bus = bus
        self._policy = policy
        self._time_cost = time_cost
        self._memory_kib = memory_kib

    async def create(self, actor: Actor, data: UserIn) -> UserOut:
        self._policy.check(data.password, username=data.username)
        digest = await anyio.to_thread.run_sync(
            lambda: hash_password(data.password, time_cost=self._time_cost, memory_kib=self._memory_kib)
        )
        async with self._db.session(actor.scope) as session:
            roles = await check_roles(session, actor, data.roles)
            team_ids = await teams.resolve(session, data.teams)
            user = await tokens.create_user(session, username=data.username, password_hash=digest, is_admin=False)
            user.roles = roles
            await teams.set_teams(session, user.id, team_ids)
            await bump_epoch(session)
        await self._bus.publish(ChangeEvent("users", user.id))
        return _out(user, team_ids)

    async def list(self, actor: Actor) -> list[UserOut]:
        async with self._db.session(actor.scope) as session:
            rows = (await session.scalars(select(User).order_by(User.username))).all()
            return [_out(user, await teams.teams_of(session, user.id)) for user in rows]

    async def update(self, actor: Actor, user_id: str, data: UserPatch) -> UserOut:
        """Replace a user's roles and/or teams: in force on the next request, on every replica."""
        async with self._db.session(actor.scope) as session:
            user = await _get(session, user_id)
            if data.roles is not None:
                user.roles = await check_roles(session, actor, data.roles)
            if data.teams is not None:
                await teams.set_teams(session, user.id, await teams.resolve(session, data.teams))
            team_ids = await teams.teams_of(session, user.id)
            await bump_epoch(session)
        await self._bus.publish(ChangeEvent("users", user_id))
        return _out(user, team_ids)

    async def unlock(self, actor: Actor, user_id: str) -> UserOut:
        async with self._db.session(actor.scope) as session:
            user = await _get(session, user_id)
            user.failed_logins, user.locked_until = 0, None
            return _out(user, await teams.teams_of(session, user.id))


async def _get(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id!r}")
    return user


def _out(user: User, team_ids: Sequence[str]) -> UserOut:
    out = UserOut.model_validate(user, from_attributes=True)
    out.teams = list(team_ids)
    return out
