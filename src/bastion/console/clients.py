"""OAuth clients in the console: the tenant's clients, a service client created (its secret shown
this once, never again), a client deleted (every token it holds revoked at once).

The same control-plane object and permission (`clients:manage`) as /api/oauth/clients.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from bastion.admin.actor import Actor
from bastion.admin.deps import ControlDep, clients_of, users_of
from bastion.admin.oauth_clients import ServiceClientCreated, ServiceClientIn
from bastion.console.forms import FormData, field_errors, listed, read_form, slugs
from bastion.console.render import page
from bastion.console.route import ConsoleRoute
from bastion.console.viewer import CurrentViewer, Viewer
from bastion.errors import BastionError
from bastion.web.authserver import AuthServer

__all__ = ["router"]

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)

_NOTICES = {"deleted": "The client is deleted: every token it held is revoked."}
_SCOPES = ("mcp", "mcp:read", "mcp:write")
_GRANTS = (
    ("client_credentials", "Client credentials (acts as its owner)"),
    ("urn:ietf:params:oauth:grant-type:token-exchange", "Token exchange (RFC 8693)"),
    ("urn:ietf:params:oauth:grant-type:jwt-bearer", "JWT bearer (identity assertion grants)"),
)
_METHODS = ("client_secret_basic", "client_secret_post")
_DEFAULTS: FormData = {
    "scopes": ["mcp"],
    "grant_types": ["client_credentials"],
    "token_endpoint_auth_method": "client_secret_basic",
}


async def _page(
    request: Request,
    control: ControlDep,
    viewer: Viewer,
    actor: Actor,
    *,
    created: ServiceClientCreated | None = None,
    values: FormData | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    auth: AuthServer = request.app.state.auth
    servers = await control.list_servers(actor) if viewer.may("servers:read") else []
    owners = {viewer.user_id: viewer.username}
    if viewer.may("users:read"):
        owners |= {user.id: user.username for user in await users_of(request).list(viewer.actor("users:read"))}
    clients = await clients_of(request).list(actor)
    if viewer.may("tenants:manage"):  # the applications that registered themselves belong to no tenant
        clients += await clients_of(request).list_registered(actor)
    return page(
        request,
        "clients.html",
        viewer=viewer,
        status=status,
        notices=_NOTICES,
        clients=clients,
        registered_shown=viewer.may("tenants:manage"),
        servers=servers,
        server_names={s.id: s.slug for s in servers},
        owners=owners,
        scopes=_SCOPES,
        grants=_GRANTS,
        grant_names=dict(_GRANTS),
        methods=_METHODS,
        token_endpoint=f"{auth.issuer}/oauth/token",
        created=created,
        created_servers=[s for s in servers if created is not None and s.id in created.server_ids],
        values=values or _DEFAULTS,
        errors=errors or {},
    )


@router.get("/clients")
async def clients(request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    return await _page(request, control, viewer, viewer.actor("clients:manage"))


@router.post("/clients")
async def create(request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("clients:manage")
    form = await read_form(request, viewer)
    # Ticked boxes, or (for whoever cannot list servers) slugs typed into one field.
    servers = slugs(form, "servers")
    values = {
        **form,
        "servers": servers,
        "scopes": listed(form, "scopes"),
        "grant_types": listed(form, "grant_types"),
    }
    try:
        data = ServiceClientIn(
            name=form.get("name", ""),
            servers=servers,
            scopes=listed(form, "scopes"),
            grant_types=listed(form, "grant_types"),
            owner=form.get("owner") or None,
            token_endpoint_auth_method=form.get("token_endpoint_auth_method") or "client_secret_basic",
        )
        created = await clients_of(request).create_service(actor, data)
    except ValidationError as error:
        return await _page(request, control, viewer, actor, values=values, errors=field_errors(error), status=422)
    except BastionError as error:
        return await _page(request, control, viewer, actor, values=values, errors={"_": error.message}, status=422)
    # The secret is in this response only (no redirect: it must never sit in a URL or history).
    return await _page(request, control, viewer, actor, created=created, status=201)


@router.post("/clients/{client_id}/delete")
async def delete(client_id: str, request: Request, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("clients:manage")
    await read_form(request, viewer)
    await clients_of(request).delete(actor, client_id)
    return RedirectResponse("/admin/clients?notice=deleted", status_code=303)
