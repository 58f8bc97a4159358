"""Teams, memberships, custom roles and tenants."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.errors import NotFound
from bastion.store.models import Role, Team, TeamMember, Tenant
from bastion.store.repos._common import add_unique, by_id_or_name

__all__ = [
    "create",
    "custom_roles",
    "get",
    "get_role",
    "list_all",
    "members_of",
    "resolve",
    "set_members",
    "set_teams",
    "teams_of",
    "tenant_by_slug",
]


async def create(session: AsyncSession, name: str) -> Team:
    return await add_unique(session, Team(name=name), f"a team named {name!r} already exists")


async def get(session: AsyncSession, id_or_name: str) -> Team:
    return await by_id_or_name(session, Team, Team.name, id_or_name, "team")


async def list_all(session: AsyncSession) -> Sequence[Team]:
    return (await session.scalars(select(Team).order_by(Team.name))).all()


async def resolve(session: AsyncSession, refs: Sequence[str]) -> list[str]:
    """Team ids for names or ids, in the session's tenant; NotFound names the first unknown one."""
    return list(dict.fromkeys([(await get(session, ref)).id for ref in refs]))


async def members_of(session: AsyncSession, team_id: str) -> list[str]:
    return list(await session.scalars(select(TeamMember.user_id).where(TeamMember.team_id == team_id)))


async def teams_of(session: AsyncSession, user_id: str) -> list[str]:
    return list(await session.scalars(select(TeamMember.team_id).where(TeamMember.user_id == user_id)))


async def set_teams(session: AsyncSession, user_id: str, team_ids: Sequence[str]) -> None:
    """Make `team_ids` exactly the user's teams."""
    await session.execute(delete(TeamMember).where(TeamMember.user_id == user_id))
    session.add_all([TeamMember(team_id=team_id, user_id=user_id) for team_id in team_ids])
    await session.flush()


async def set_members(session: AsyncSession, team_id: str, user_ids: Sequence[str]) -> None:
    """Make `user_ids` exactly the team's members."""
    await session.execute(delete(TeamMember).where(TeamMember.team_id == team_id))
    session.add_all([TeamMember(team_id=team_id, user_id=user_id) for user_id in dict.fromkeys(user_ids)])
    await session.flush()


async def custom_roles(session: AsyncSession) -> Sequence[Role]:
    return (await session.scalars(select(Role).order_by(Role.name))).all()


async def get_role(session: AsyncSession, id_or_name: str) -> Role:
    return await by_id_or_name(session, Role, Role.name, id_or_name, "role")


async def tenant_by_slug(session: AsyncSession, slug: str) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    return tenant
