"""FastAPI dependencies of the admin API: the Control object and the admin principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bastion.admin.control import Control
from bastion.catalog.holder import SnapshotHolder
from bastion.errors import Forbidden
from bastion.identity.bearer import authenticate_bearer
from bastion.identity.principal import Principal

__all__ = ["AdminPrincipal", "ControlDep"]


def _control(request: Request) -> Control:
    control: Control = request.app.state.control
    return control


async def _admin(request: Request) -> Principal:
    holder: SnapshotHolder = request.app.state.holder
    # Confirmed current first (503 otherwise): an admin token revoked on another replica is refused.
    snapshot = await holder.checked()
    principal = authenticate_bearer(snapshot.tokens, request.headers.get("authorization"))
    if not principal.may_administer:
        raise Forbidden("this token does not carry the admin scope")
    return principal


ControlDep = Annotated[Control, Depends(_control)]
AdminPrincipal = Annotated[Principal, Depends(_admin)]
