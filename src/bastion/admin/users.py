"""Users of a tenant: create (under the password policy), list, unlock, assign roles and teams."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.admin.actor import Actor
from bastion.admin.schemas import UserIn, UserOut, UserPatch
from bastion.bus import Bus, ChangeEvent
from bastion.errors import BadRequest, Conflict, Forbidden, NotFound
from bastion.governance.permissions import (
    BUILTIN_ROLES,
    PLATFORM_ADMIN,
    Grants,
    parse_permission,
    parse_permissions,
    permission_text,
)
from bastion.identity.passwords import PasswordPolicy, hash_password
from bastion.store.db import Database, bump_epoch
from bastion.store.models import Origin, User, VirtualServer
from bastion.store.repos import teams, tokens
from bastion.store.repos.snapshot import effective_roles
from bastion.store.tenancy import SYSTEM

__all__ = ["Users", "acting_as", "beyond", "check_may_act_for", "check_not_above", "check_roles", "within_minter"]


def beyond(actor: Actor, pairs: frozenset[tuple[str, str]]) -> list[str]:
    """The permissions among `pairs` the actor does not hold, as text (at most five): what its roles
    grant, narrowed by its token's limit. Whoever manages roles and users cannot hand out (and so
    take) more power than their own. The operator (CLI) holds everything."""
    member = actor.member
    if member is None:
        return []
    held, limit = member.grants, actor.limit
    missing = {pair for pair in pairs if not held.covers(pair) or (limit is not None and not limit.covers(pair))}
    return sorted(permission_text(pair) for pair in missing)[:5]


async def check_roles(
    session: AsyncSession, actor: Actor, roles: Sequence[str], *, replacing: Sequence[str] = ()
) -> list[str]:
    """Roles that exist in the actor's tenant (built-in or custom), none granting more than the actor
    holds. When they replace a user's roles (`replacing`), the ones taken away must be within the
    actor's power too: a tenant administrator cannot demote a platform administrator."""
    custom = {role.name: parse_permissions(role.permissions) for role in await teams.custom_roles(session)}
    unknown = [r for r in roles if r not in BUILTIN_ROLES and r not in custom]
    if unknown:
        raise BadRequest(f"unknown roles: {', '.join(unknown)} (built-in: {', '.join(BUILTIN_ROLES)})")
    taken = [r for r in replacing if r not in roles]
    if PLATFORM_ADMIN in (*roles, *taken) and not actor.may("tenants:manage"):
        raise Forbidden("only a platform administrator may grant or take platform-admin")
    for role, verb in [*((r, "grant") for r in roles), *((r, "take away") for r in taken)]:
        missing = beyond(actor, Grants.of_roles([role], custom).pairs)
        if missing:
            raise Forbidden(f"role {role!r} grants what you do not hold ({', '.join(missing)}): you cannot {verb} it")
    return list(dict.fromkeys(roles))


async def acting_as(session: AsyncSession, actor: Actor, name: str | None) -> User:
    """Whom an API token or a service client acts as: the user named, else the caller, found by id.
    Never the caller's name: a session's name is the one it began with, and a name can change hands
    (an identity provider renames its users at sign-in), so "myself" by name could be someone else."""
    if name is None and actor.user_id is not None:
        user = await session.get(User, actor.user_id)
    else:
        user = await tokens.user_by_name(session, name or actor.username)
    if user is None:
        raise NotFound(f"no user {name or actor.username!r}")
    return user


async def check_may_act_for(session: AsyncSession, actor: Actor, user: User) -> None:
    """Forbidden unless the actor may hold a credential that acts as `user` (an API token or a
    service client of theirs): everything the user's roles grant, the actor holds.
    `tokens:manage` alone does not let a tenant administrator mint a token as a platform
    administrator, nor a custom role's holder one as someone above them.

    What the user sees beyond their roles counts too: their teams' servers and origins, and the
    ones they own. Without `users:manage` (whose holders could put themselves in any team), the
    actor must be in each of the user's teams, and the user must own no server or origin. Even
    with it, the user must own nothing private: no one else reaches that (an origin carrying the
    user's own upstream credential, for one), and no role makes its holder the owner."""
    if user.id == actor.user_id or actor.member is None:  # oneself; the operator (CLI) holds everything
        return
    await check_not_above(session, actor, user, "act as them")
    manager = actor.may("users:manage")
    if not manager and not set(await teams.teams_of(session, user.id)) <= actor.member.team_ids:
        raise Forbidden(f"{user.username!r} is in a team you are not in: you cannot act as them")
    for model in (VirtualServer, Origin):
        owned = select(model.id).where(model.owner_user_id == user.id)
        if manager:
            owned = owned.where(model.visibility == "private")
        if await session.scalar(owned.limit(1)) is not None:
            mine = "private servers or origins" if manager else "servers or origins"
            raise Forbidden(f"{user.username!r} owns {mine} of their own: you cannot act as them")


async def check_not_above(session: AsyncSession, actor: Actor, user: User, verb: str) -> None:
    """Forbidden when `user` holds what the actor does not: their roles grant a permission the actor
    lacks, or they are a platform administrator and the actor is not. For what a manager may do to
    someone (act as them, unlock them, change their teams) only up to their own level."""
    if user.id == actor.user_id or actor.member is None:  # oneself; the operator (CLI) holds everything
        return
    roles = effective_roles(user)
    if PLATFORM_ADMIN in roles and not actor.may("tenants:manage"):
        raise Forbidden(f"{user.username!r} is a platform administrator: only another may {verb}")
    custom = {role.name: parse_permissions(role.permissions) for role in await teams.custom_roles(session)}
    missing = beyond(actor, Grants.of_roles(roles, custom).pairs)
    if missing:
        raise Forbidden(f"{user.username!r} holds what you do not ({', '.join(missing)}): you cannot {verb}")


def within_minter(actor: Actor, permissions: list[str] | None) -> list[str] | None:
    """The permission limit of an API token `actor` mints for someone else: never beyond what the
    minter holds now. A token acts with its user's current roles: one minted for a user the minter
    may act for would otherwise grow with their next promotion, in the hands of whoever minted it."""
    member = actor.member
    if member is None:  # the operator (CLI) holds everything
        return permissions
    if permissions is None:
        grants, limit = member.grants, actor.limit
        held = grants.pairs
        if limit is not None:  # what both allow: each one's pairs the other covers (wildcards both ways)
            held = frozenset(
                {p for p in grants.pairs if limit.covers(p)} | {p for p in limit.pairs if grants.covers(p)}
            )
        return sorted(permission_text(pair) for pair in held)
    wider = beyond(actor, frozenset(parse_permission(text) for text in permissions))
    if wider:
        raise Forbidden(f"a token you mint for someone else cannot carry what you do not hold ({', '.join(wider)})")
    return permissions


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
            held = effective_roles(user)  # the first administrator's flag counts as platform-admin
            if data.roles is not None:
                # The flag holds whatever roles are set (the console's form shows roles only), so
                # leaving platform-admin out takes it only from someone who holds it as a role.
                user.roles = await check_roles(session, actor, data.roles, replacing=user.roles)
            if data.is_admin is False and user.is_admin:
                if not actor.may("tenants:manage"):
                    raise Forbidden("only a platform administrator may take platform-admin")
                user.is_admin = False
            if PLATFORM_ADMIN in held and PLATFORM_ADMIN not in effective_roles(user):
                # Writers of this check wait for each other here (the epoch's row lock; SQLite's
                # single writer): two administrators taking each other's role at once cannot
                # both find the other still one.
                await bump_epoch(session)
                await self._check_another_platform_admin(user.id)
            if data.teams is not None:
                team_ids = await teams.resolve(session, data.teams)
                if set(team_ids) != set(await teams.teams_of(session, user.id)):
                    await check_not_above(session, actor, user, "change their teams")
                await teams.set_teams(session, user.id, team_ids)
            team_ids = await teams.teams_of(session, user.id)
            await bump_epoch(session)
        await self._bus.publish(ChangeEvent("users", user_id))
        return _out(user, team_ids)

    async def _check_another_platform_admin(self, user_id: str) -> None:
        """Conflict unless someone else is a platform administrator: taking the last one's role
        would leave nobody to manage tenants (short of the database itself)."""
        async with self._db.session(SYSTEM) as session:
            others = (await session.scalars(select(User).where(User.id != user_id))).all()
        if not any(PLATFORM_ADMIN in effective_roles(other) for other in others):
            raise Conflict("this is the last platform administrator: make someone else one first")

    async def unlock(self, actor: Actor, user_id: str) -> UserOut:
        async with self._db.session(actor.scope) as session:
            user = await _get(session, user_id)
            # A lockout stops someone guessing a password: lifting it is for those at the user's level.
            await check_not_above(session, actor, user, "unlock them")
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
