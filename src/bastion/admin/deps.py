"""FastAPI dependencies of the admin API: the Control object, and the actor a route requires.

Each route names the permission it needs (`actor: OriginsManage`). The
decision is made on a snapshot confirmed current (503 otherwise), so a role
removed or a token revoked on another replica is refused on the next request.
Any error while deciding denies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import structlog
from fastapi import Depends, Request

from bastion.admin.actor import Actor
from bastion.admin.control import Control
from bastion.admin.governance import Governance
from bastion.admin.oauth_clients import OAuthClients
from bastion.admin.policies import PolicyAdmin
from bastion.admin.users import Users
from bastion.audit.sink import note
from bastion.catalog.holder import SnapshotHolder
from bastion.errors import Forbidden, NotFound
from bastion.identity.bearer import authenticate_bearer
from bastion.identity.token_rules import RECORDER_SCOPE_KEY, TokenGate, UseRecorder
from bastion.oauth.downstream_grants import client_key
from bastion.web.authserver import AuthServer

__all__ = [
    "AuditRead",
    "ClientsDep",
    "ClientsManage",
    "ConnectorsApprove",
    "ControlDep",
    "GovernanceDep",
    "MetricsRead",
    "OriginsManage",
    "OriginsRead",
    "PoliciesManage",
    "PoliciesRead",
    "PolicyDep",
    "RolesManage",
    "ServersManage",
    "ServersPublish",
    "ServersRead",
    "TenantsManage",
    "TokensCreate",
    "UsersDep",
    "UsersManage",
    "UsersRead",
    "clients_of",
    "governance_of",
    "policies_of",
    "users_of",
]

log = structlog.get_logger(__name__)

TENANT_HEADER = "x-bastion-tenant"


def _control(request: Request) -> Control:
    control: Control = request.app.state.control
    return control


# The control-plane objects on the app, for the API's routes (the aliases below) and the console's.
def users_of(request: Request) -> Users:
    users: Users = request.app.state.users
    return users


def governance_of(request: Request) -> Governance:
    governance: Governance = request.app.state.governance
    return governance


def policies_of(request: Request) -> PolicyAdmin:
    policies: PolicyAdmin = request.app.state.policies
    return policies


def clients_of(request: Request) -> OAuthClients:
    auth: AuthServer = request.app.state.auth
    return OAuthClients(auth.db, auth.store)


def _requiring(action: str) -> Callable[[Request], Awaitable[Actor]]:
    async def actor(request: Request) -> Actor:
        holder: SnapshotHolder = request.app.state.holder
        snapshot = await holder.checked()
        principal = authenticate_bearer(snapshot.tokens, request.headers.get("authorization"))
        known = snapshot.members.get(principal.user_id)
        note(
            request.scope,
            principal=principal.user_id,
            client=client_key(principal.client_id, principal.token_id),
            tenant=known.tenant_id if known is not None else None,
        )
        # The token's own rules (source networks, validity start) before anything else; the use is
        # recorded, allowed or refused, by the UseRecorder app.py put in the scope.
        gate: TokenGate | None = getattr(request.app.state, "token_gate", None)
        recorder = request.scope.get(RECORDER_SCOPE_KEY)
        recorder = recorder if isinstance(recorder, UseRecorder) else None
        if gate is not None and principal.client_id is None:
            gate.admit(principal, request.scope, recorder)
        if not principal.may_administer:
            raise Forbidden("this token does not carry the admin scope")
        member = snapshot.members.get(principal.user_id)
        try:
            allowed = member is not None and member.may(action, principal.limit)
        except Exception:  # deny when a decision cannot be made
            log.exception("authorization_failed", action=action)
            allowed = False
        if not allowed or member is None:
            raise Forbidden(f"this needs the permission {action!r}, which your roles do not grant")
        tenant_id = member.tenant_id
        wanted = request.headers.get(TENANT_HEADER)
        if wanted:
            if not member.may("tenants:manage", principal.limit):
                raise Forbidden(f"only platform administrators may act in another tenant ({TENANT_HEADER})")
            if wanted not in snapshot.tenants:
                raise NotFound(f"no tenant {wanted!r}")
            tenant_id = snapshot.tenants[wanted]
        if gate is not None and principal.client_id is None:
            await gate.count(principal, recorder)  # the quota, once the use is otherwise allowed
        note(request.scope, tenant=tenant_id)
        return Actor(
            username=principal.username,
            user_id=principal.user_id,
            tenant_id=tenant_id,
            member=member,
            token=principal,
        )

    return actor


# One alias per permission, for route signatures: `actor: OriginsManage`.
OriginsRead = Annotated[Actor, Depends(_requiring("origins:read"))]
OriginsManage = Annotated[Actor, Depends(_requiring("origins:manage"))]
ConnectorsApprove = Annotated[Actor, Depends(_requiring("connectors:approve"))]
ServersRead = Annotated[Actor, Depends(_requiring("servers:read"))]
ServersManage = Annotated[Actor, Depends(_requiring("servers:manage"))]
ServersPublish = Annotated[Actor, Depends(_requiring("servers:publish"))]
UsersRead = Annotated[Actor, Depends(_requiring("users:read"))]
UsersManage = Annotated[Actor, Depends(_requiring("users:manage"))]
RolesManage = Annotated[Actor, Depends(_requiring("roles:manage"))]
TokensCreate = Annotated[Actor, Depends(_requiring("tokens:create"))]
ClientsManage = Annotated[Actor, Depends(_requiring("clients:manage"))]
AuditRead = Annotated[Actor, Depends(_requiring("audit:read"))]
TenantsManage = Annotated[Actor, Depends(_requiring("tenants:manage"))]
MetricsRead = Annotated[Actor, Depends(_requiring("metrics:read"))]
PoliciesRead = Annotated[Actor, Depends(_requiring("policies:read"))]
PoliciesManage = Annotated[Actor, Depends(_requiring("policies:manage"))]
ControlDep = Annotated[Control, Depends(_control)]
UsersDep = Annotated[Users, Depends(users_of)]
GovernanceDep = Annotated[Governance, Depends(governance_of)]
PolicyDep = Annotated[PolicyAdmin, Depends(policies_of)]
ClientsDep = Annotated[OAuthClients, Depends(clients_of)]
