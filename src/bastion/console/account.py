"""My account: the signed-in person's own page, open to everyone signed in (no admin permission).

Who they are and what their roles allow; the applications they allowed to use a virtual server
(consents, as /auth/consents), each withdrawn with one button; the accounts they connected at
per-user OAuth origins (as /auth/connections), each disconnected with one button.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from bastion.console.forms import read_form
from bastion.console.render import page
from bastion.console.route import ConsoleRoute
from bastion.console.viewer import CurrentViewer
from bastion.governance.permissions import PLATFORM_ADMIN, permission_text
from bastion.store.repos.consents import list_consents, withdraw_consent
from bastion.web.authserver import AuthServer
from bastion.web.connect import connections_of, disconnect_origin

__all__ = ["router"]

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)

_NOTICES = {
    "withdrawn": "The consent is withdrawn: the application's tokens for that server stopped working.",
    "disconnected": "The account is disconnected: its tokens are deleted here and no call uses them again.",
}


def _auth(request: Request) -> AuthServer:
    auth: AuthServer = request.app.state.auth
    return auth


@router.get("/account")
async def account(request: Request, viewer: CurrentViewer) -> Response:
    auth = _auth(request)
    record = await auth.store.get_user(viewer.user_id)
    roles = list(record.roles) if record is not None else []
    if record is not None and record.is_admin and PLATFORM_ADMIN not in roles:
        roles.append(PLATFORM_ADMIN)  # the bootstrap administrator holds it whatever else
    granted = sorted(permission_text(pair) for pair in viewer.member.grants.pairs)
    connections = await connections_of(auth, viewer.user_id)
    return page(
        request,
        "account.html",
        viewer=viewer,
        notices=_NOTICES,
        roles=roles,
        granted=granted,
        consents=await list_consents(auth.db, viewer.user_id),
        connections=connections,
        expiries={c.origin_id: datetime.fromtimestamp(c.expires_at, UTC) for c in connections if c.expires_at},
    )


@router.post("/account/consents/{consent_id}/withdraw")
async def withdraw(consent_id: str, request: Request, viewer: CurrentViewer) -> Response:
    await read_form(request, viewer)
    auth = _auth(request)
    await withdraw_consent(auth.db, auth.bus, viewer.user_id, consent_id)  # NotFound unless it is theirs
    return RedirectResponse("/admin/account?notice=withdrawn", status_code=303)


@router.post("/account/connections/{origin_id}/disconnect")
async def disconnect(origin_id: str, request: Request, viewer: CurrentViewer) -> Response:
    await read_form(request, viewer)
    await disconnect_origin(_auth(request), viewer.user_id, origin_id)
    return RedirectResponse("/admin/account?notice=disconnected", status_code=303)
