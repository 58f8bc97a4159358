"""Tenants (platform administrators), teams, roles and permissions, and the audit reads."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from bastion.admin.deps import AuditRead, GovernanceDep, RolesManage, TenantsManage, UsersManage, UsersRead
from bastion.admin.governance import (
    Governance,
    LoginEventOut,
    PermissionOut,
    RoleIn,
    RoleOut,
    TeamIn,
    TeamMembersIn,
    TeamOut,
    TenantIn,
    TenantOut,
    TokenUseOut,
)

router = APIRouter(tags=["governance"])


Limit = Annotated[int, Query(ge=1, le=1000)]


@router.post("/tenants", status_code=201, response_model=TenantOut)
async def create_tenant(data: TenantIn, governance: GovernanceDep, _: TenantsManage) -> TenantOut:
    return await governance.create_tenant(data)


@router.get("/tenants", response_model=list[TenantOut])
async def list_tenants(governance: GovernanceDep, _: TenantsManage) -> list[TenantOut]:
    return await governance.list_tenants()


@router.post("/teams", status_code=201, response_model=TeamOut)
async def create_team(data: TeamIn, governance: GovernanceDep, actor: UsersManage) -> TeamOut:
    return await governance.create_team(actor, data)


@router.get("/teams", response_model=list[TeamOut])
async def list_teams(governance: GovernanceDep, actor: UsersRead) -> list[TeamOut]:
    return await governance.list_teams(actor)


@router.put("/teams/{team}/members", response_model=TeamOut)
async def set_team_members(team: str, data: TeamMembersIn, governance: GovernanceDep, actor: UsersManage) -> TeamOut:
    return await governance.set_team_members(actor, team, data)


@router.delete("/teams/{team}", status_code=204)
async def delete_team(team: str, governance: GovernanceDep, actor: UsersManage) -> Response:
    await governance.delete_team(actor, team)
    return Response(status_code=204)


@router.get("/roles", response_model=list[RoleOut])
async def list_roles(governance: GovernanceDep, actor: UsersRead) -> list[RoleOut]:
    return await governance.list_roles(actor)


@router.get("/permissions", response_model=list[PermissionOut])
async def list_permissions(_: UsersRead) -> list[PermissionOut]:
    return Governance.permissions()


@router.post("/roles", status_code=201, response_model=RoleOut)
async def create_role(data: RoleIn, governance: GovernanceDep, actor: RolesManage) -> RoleOut:
    return await governance.create_role(actor, data)


@router.delete("/roles/{name}", status_code=204)
async def delete_role(name: str, governance: GovernanceDep, actor: RolesManage) -> Response:
    await governance.delete_role(actor, name)
    return Response(status_code=204)


@router.get("/audit/logins", response_model=list[LoginEventOut])
async def login_events(governance: GovernanceDep, actor: AuditRead, limit: Limit = 100) -> list[LoginEventOut]:
    return await governance.login_events(actor, limit)


@router.get("/audit/token-uses", response_model=list[TokenUseOut])
async def token_uses(
    governance: GovernanceDep, actor: AuditRead, token_id: str | None = None, limit: Limit = 100
) -> list[TokenUseOut]:
    return await governance.token_uses(actor, token_id, limit)
