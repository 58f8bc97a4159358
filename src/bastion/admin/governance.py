"""Tenants, teams and custom roles: the control plane's side of who may do what.

Every write bumps the change epoch and publishes an event, so a membership or
role change is in force on the next request, on every replica.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.admin.actor import Actor
from bastion.admin.schemas import Slug, StrictIn
from bastion.admin.users import beyond, check_not_above
from bastion.bus import Bus, ChangeEvent
from bastion.errors import BadRequest, Conflict, Forbidden
from bastion.governance.permissions import (
    BUILTIN_ROLES,
    CONTROL_ACTIONS,
    DATA_ACTIONS,
    PLATFORM_ACTIONS,
    parse_permission,
    parse_permissions,
)
from bastion.store.db import Database, bump_epoch
from bastion.store.models import ApiTokenUse, LoginEvent, Role, Tenant, User
from bastion.store.repos import teams
from bastion.store.repos._common import add_unique, by_id_or_name
from bastion.store.tenancy import SYSTEM

__all__ = ["Governance"]


class TenantIn(StrictIn):
    slug: str = Slug
    name: str = Field("", max_length=200)


class TenantOut(BaseModel):
    id: str
    slug: str
    name: str
    created_at: datetime


class TeamIn(StrictIn):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    members: list[str] = Field(default_factory=list, max_length=1000, description="user names or ids")


class TeamMembersIn(StrictIn):
    members: list[str] = Field(max_length=1000, description="user names or ids: the team's whole membership")


class TeamOut(BaseModel):
    id: str
    name: str
    members: list[str]


class RoleIn(StrictIn):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = Field("", max_length=500)
    permissions: list[str] = Field(min_length=1, max_length=500)


class RoleOut(BaseModel):
    name: str
    description: str
    permissions: list[str]
    builtin: bool


class PermissionOut(BaseModel):
    action: str
    plane: str
    description: str


class LoginEventOut(BaseModel):
    username: str
    user_id: str | None
    outcome: str
    ip: str
    user_agent: str
    created_at: datetime


class TokenUseOut(BaseModel):
    token_id: str
    at: datetime
    method: str
    path: str
    ip: str
    user_agent: str
    status: int
    latency_ms: float
    block_reason: str | None


class Governance:
    def __init__(self, db: Database, bus: Bus) -> None:
        self._db = db
        self._bus = bus

    async def _changed(self, subject_id: str) -> None:
        await self._bus.publish(ChangeEvent("users", subject_id))

    # --- tenants (platform administrators) -----------------------------------------------
    async def create_tenant(self, data: TenantIn) -> TenantOut:
        async with self._db.session(SYSTEM) as session:
            tenant = await add_unique(
                session, Tenant(slug=data.slug, name=data.name or data.slug), f"a tenant {data.slug!r} already exists"
            )
            await bump_epoch(session)
        await self._changed(tenant.id)
        return TenantOut.model_validate(tenant, from_attributes=True)

    async def list_tenants(self) -> list[TenantOut]:
        async with self._db.session(SYSTEM) as session:
            rows = await session.scalars(select(Tenant).order_by(Tenant.slug))
            return [TenantOut.model_validate(t, from_attributes=True) for t in rows]

    # --- teams --------------------------------------------------------------------------------
    async def create_team(self, actor: Actor, data: TeamIn) -> TeamOut:
        async with self._db.session(actor.scope) as session:
            team = await teams.create(session, data.name)
            user_ids = [await _user_id(session, ref) for ref in data.members]
            await _check_members_change(session, actor, set(), set(user_ids))
            await teams.set_members(session, team.id, user_ids)
            await bump_epoch(session)
        await self._changed(team.id)
        return TeamOut(id=team.id, name=team.name, members=list(dict.fromkeys(user_ids)))

    async def list_teams(self, actor: Actor) -> list[TeamOut]:
        async with self._db.session(actor.scope) as session:
            return [
                TeamOut(id=t.id, name=t.name, members=await teams.members_of(session, t.id))
                for t in await teams.list_all(session)
            ]

    async def set_team_members(self, actor: Actor, team_ref: str, data: TeamMembersIn) -> TeamOut:
        async with self._db.session(actor.scope) as session:
            team = await teams.get(session, team_ref)
            user_ids = [await _user_id(session, ref) for ref in data.members]
            await _check_members_change(session, actor, set(await teams.members_of(session, team.id)), set(user_ids))
            await teams.set_members(session, team.id, user_ids)
            await bump_epoch(session)
        await self._changed(team.id)
        return TeamOut(id=team.id, name=team.name, members=list(dict.fromkeys(user_ids)))

    async def delete_team(self, actor: Actor, team_ref: str) -> None:
        async with self._db.session(actor.scope) as session:
            team = await teams.get(session, team_ref)
            await _check_members_change(session, actor, set(await teams.members_of(session, team.id)), set())
            await session.delete(team)
            await bump_epoch(session)
        await self._changed(team_ref)

    # --- roles --------------------------------------------------------------------------------
    async def list_roles(self, actor: Actor) -> list[RoleOut]:
        builtin = [
            RoleOut(name=name, description="built-in", permissions=list(actions), builtin=True)
            for name, actions in BUILTIN_ROLES.items()
        ]
        async with self._db.session(actor.scope) as session:
            custom = [
                RoleOut(name=r.name, description=r.description, permissions=list(r.permissions), builtin=False)
                for r in await teams.custom_roles(session)
            ]
        return builtin + custom

    @staticmethod
    def permissions() -> list[PermissionOut]:
        return [PermissionOut(action=a, plane="control", description=d) for a, d in CONTROL_ACTIONS.items()] + [
            PermissionOut(action=a, plane="data", description=d) for a, d in DATA_ACTIONS.items()
        ]

    async def create_role(self, actor: Actor, data: RoleIn) -> RoleOut:
        if data.name in BUILTIN_ROLES:
            raise Conflict(f"{data.name!r} is a built-in role")
        for text in data.permissions:
            action, _ = parse_permission(text)
            if action in PLATFORM_ACTIONS:
                raise BadRequest(f"{action} belongs to platform administrators: a custom role cannot grant it")
        missing = beyond(actor, parse_permissions(data.permissions))
        if missing:  # else whoever may define roles could define one above their own, then be given it
            raise Forbidden(f"the role would grant what you do not hold ({', '.join(missing)})")
        async with self._db.session(actor.scope) as session:
            role = await add_unique(
                session,
                Role(name=data.name, description=data.description, permissions=list(dict.fromkeys(data.permissions))),
                f"a role named {data.name!r} already exists",
            )
            await bump_epoch(session)
        await self._changed(role.id)
        return RoleOut(name=role.name, description=role.description, permissions=role.permissions, builtin=False)

    async def delete_role(self, actor: Actor, name: str) -> None:
        """Delete a custom role; users holding it lose what it granted on the next request. The
        name goes from their roles too: a role made later under the same name grants them nothing."""
        async with self._db.session(actor.scope) as session:
            role = await teams.get_role(session, name)
            missing = beyond(actor, parse_permissions(role.permissions))
            if missing:  # taking a power away is as much beyond one's own as handing it out
                shown = ", ".join(missing)
                raise Forbidden(f"role {role.name!r} grants what you do not hold ({shown}): you cannot delete it")
            for user in await session.scalars(select(User)):  # the tenant's users (the session's scope)
                if role.name in user.roles:
                    user.roles = [r for r in user.roles if r != role.name]
            await session.delete(role)
            await bump_epoch(session)
        await self._changed(name)

    # --- audit reads ----------------------------------------------------------------------------
    async def login_events(self, actor: Actor, limit: int) -> list[LoginEventOut]:
        async with self._db.session(actor.scope) as session:
            rows = await session.scalars(select(LoginEvent).order_by(LoginEvent.created_at.desc()).limit(limit))
            return [LoginEventOut.model_validate(e, from_attributes=True) for e in rows]

    async def token_uses(self, actor: Actor, token_id: str | None, limit: int) -> list[TokenUseOut]:
        query = select(ApiTokenUse).order_by(ApiTokenUse.at.desc()).limit(limit)
        if token_id is not None:
            query = query.where(ApiTokenUse.token_id == token_id)
        async with self._db.session(actor.scope) as session:
            return [TokenUseOut.model_validate(u, from_attributes=True) for u in await session.scalars(query)]


async def _user_id(session: AsyncSession, ref: str) -> str:
    return (await by_id_or_name(session, User, User.username, ref, "user")).id


async def _check_members_change(session: AsyncSession, actor: Actor, before: set[str], after: set[str]) -> None:
    """Whoever joins or leaves a team through this change must be at the actor's level or below:
    taking someone above oneself out of a team cuts what they reach."""
    for user_id in sorted(before ^ after):
        user = await session.get(User, user_id)
        if user is not None:
            await check_not_above(session, actor, user, "change their teams")
