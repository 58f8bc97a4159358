"""API tokens in the console: list, create (the secret shown this once, never again), revoke."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from bastion.admin.actor import Actor
from bastion.admin.deps import ControlDep
from bastion.admin.schemas import TokenCreated, TokenIn
from bastion.console.forms import FormData, field_errors, listed, read_form, slugs
from bastion.console.render import page
from bastion.console.route import ConsoleRoute
from bastion.console.servers import client_config
from bastion.console.viewer import CurrentViewer, Viewer
from bastion.errors import BastionError

__all__ = ["router"]

router = APIRouter(prefix="/admin/tokens", route_class=ConsoleRoute, include_in_schema=False)

_NOTICES = {"revoked": "The token is revoked: its next request fails."}
_SCOPES = ("mcp", "mcp:read", "mcp:write", "admin")


async def _page(
    request: Request,
    control: ControlDep,
    viewer: Viewer,
    actor: Actor,
    *,
    created: TokenCreated | None = None,
    values: FormData | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    servers = await control.list_servers(actor) if viewer.may("servers:read") else []
    # The new token's configuration for each server it reaches (the secret, this once).
    reached = [s for s in servers if created is not None and s.id in created.server_ids]
    return page(
        request,
        "tokens.html",
        viewer=viewer,
        status=status,
        notices=_NOTICES,
        tokens=await control.list_tokens(actor),
        servers=servers,
        server_names={s.id: s.slug for s in servers},
        scopes=_SCOPES,
        created=created,
        created_configs=[(s.slug, client_config(s, created.token)) for s in reached if created is not None],
        values=values or {"expires_in_days": "30", "scopes": ["mcp"]},
        errors=errors or {},
    )


@router.get("")
async def tokens(request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    return await _page(request, control, viewer, viewer.actor("tokens:create"))


@router.post("")
async def create(request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("tokens:create")
    form = await read_form(request, viewer)
    try:
        data = TokenIn(
            name=form.get("name", ""),
            servers=slugs(form, "servers"),
            scopes=listed(form, "scopes"),  # validated by TokenIn
            expires_in_days=form.get("expires_in_days") or 30,
        )
        created = await control.create_token(actor, data)
    except ValidationError as error:
        return await _page(request, control, viewer, actor, values=form, errors=field_errors(error), status=422)
    except BastionError as error:
        return await _page(request, control, viewer, actor, values=form, errors={"_": error.message}, status=422)
    # The secret is in this response only (no redirect: it must never sit in a URL or history).
    return await _page(request, control, viewer, actor, created=created, status=201)


@router.post("/{token_id}/revoke")
async def revoke(token_id: str, request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("tokens:create")
    await read_form(request, viewer)
    await control.revoke_token(actor, token_id)
    return RedirectResponse("/admin/tokens?notice=revoked", status_code=303)
