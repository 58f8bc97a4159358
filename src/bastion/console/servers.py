"""Virtual servers in the console: the list, creation, and one server's page: compose items from an
approved origin, enable, disable and alias each item, publish or unpublish, delete, and the client
configuration to copy."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from bastion.admin.actor import Actor
from bastion.admin.deps import ControlDep
from bastion.admin.schemas import ComposeIn, ItemPatch, ServerIn, ServerOut
from bastion.console.forms import VISIBILITIES, FormData, field_errors, lines, placement, read_form
from bastion.console.render import page
from bastion.console.route import ConsoleRoute
from bastion.console.viewer import CurrentViewer, Viewer
from bastion.errors import BadRequest, BastionError, Forbidden, NotFound

__all__ = ["client_config", "router"]

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)

_NOTICES = {
    "created": "The virtual server is created: add items from an approved origin, then publish it.",
    "composed": "The items are added.",
    "item_enabled": "The item is enabled: clients see it again.",
    "item_disabled": "The item is disabled: clients no longer see or call it.",
    "aliased": "The item is renamed: clients see it under its new name.",
    "published": "The virtual server is published: clients with a token for it can connect.",
    "unpublished": "The virtual server is unpublished: clients can no longer connect.",
    "deleted": "The virtual server is deleted.",
}
_CREATE_DEFAULTS: FormData = {"visibility": "tenant"}


_PLACEHOLDER = "<your token>"


def client_config(server: ServerOut, token: str = _PLACEHOLDER) -> str:
    """What an MCP client needs to reach the server: its URL and an Authorization header (the token
    just created, or a placeholder to fill in)."""
    entry = {"type": "streamable-http", "url": server.mcp_url, "headers": {"Authorization": f"Bearer {token}"}}
    return json.dumps({"mcpServers": {server.slug: entry}}, indent=2)


async def _list_page(
    request: Request,
    control: ControlDep,
    viewer: Viewer,
    actor: Actor,
    *,
    values: FormData | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return page(
        request,
        "servers.html",
        viewer=viewer,
        status=status,
        notices=_NOTICES,
        servers=await control.list_servers(actor),
        visibilities=VISIBILITIES,
        values=values or _CREATE_DEFAULTS,
        errors=errors or {},
    )


async def _server_page(
    request: Request,
    control: ControlDep,
    viewer: Viewer,
    server_id: str,
    *,
    values: FormData | None = None,
    errors: dict[str, str] | None = None,
    alias_errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    actor = viewer.actor("servers:read")
    server = await control.get_server(actor, server_id)
    # Origins by id, for the items table; the approved ones, for the compose form.
    known = await control.list_origins(actor) if viewer.may("origins:read") else []
    return page(
        request,
        "server.html",
        viewer=viewer,
        status=status,
        notices=_NOTICES,
        server=server,
        origin_names={o.id: o.name for o in known},
        approved=[(o.id, o.name) for o in known if o.status == "approved"],
        config=client_config(server),
        values=values or {},
        errors=errors or {},
        alias_errors=alias_errors or {},
    )


@router.get("/servers")
async def servers(request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    return await _list_page(request, control, viewer, viewer.actor("servers:read"))


@router.post("/servers")
async def create(request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("servers:manage")
    form = await read_form(request, viewer)
    try:
        data = ServerIn.model_validate(
            {
                "slug": form.get("slug", ""),
                "title": form.get("title", ""),
                "description": form.get("description", ""),
                **placement(form),
            }
        )
        created = await control.create_server(actor, data)
    except ValidationError as error:
        errors = field_errors(error)
        reader = viewer.actor("servers:read")
        return await _list_page(request, control, viewer, reader, values=form, errors=errors, status=422)
    except Forbidden:
        raise
    except BastionError as error:  # a slug taken, an unknown team
        reader = viewer.actor("servers:read")
        return await _list_page(request, control, viewer, reader, values=form, errors={"_": error.message}, status=422)
    return RedirectResponse(f"/admin/servers/{created.id}?notice=created", status_code=303)


@router.get("/servers/{server_id}")
async def server(server_id: str, request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    return await _server_page(request, control, viewer, server_id)


@router.post("/servers/{server_id}/compose")
async def compose(server_id: str, request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("servers:manage")
    form = await read_form(request, viewer)
    names = lines(form, "items")
    try:
        data = ComposeIn.model_validate(
            {"origin": form.get("origin", ""), "prefix": form.get("prefix", ""), "items": names or None}
        )
        await control.compose(actor, server_id, data)
    except ValidationError as error:
        return await _server_page(
            request, control, viewer, server_id, values=form, errors=field_errors(error), status=422
        )
    except Forbidden:
        raise
    except BastionError as error:  # an origin not approved, a name it does not offer, a clash of names
        return await _server_page(
            request, control, viewer, server_id, values=form, errors={"_": error.message}, status=422
        )
    return RedirectResponse(f"/admin/servers/{server_id}?notice=composed", status_code=303)


@router.post("/servers/{server_id}/items/{item_id}")
async def patch_item(
    server_id: str, item_id: str, request: Request, control: ControlDep, viewer: CurrentViewer
) -> Response:
    """One item's form: `enabled` (true or false) from its Enable/Disable button, or `alias`."""
    actor = viewer.actor("servers:manage")
    form = await read_form(request, viewer)
    fields = {key: form[key] for key in ("enabled", "alias") if key in form}
    try:
        data = ItemPatch.model_validate(fields)
        if data.enabled is None and data.alias is None:
            raise BadRequest("say what to change: enabled or alias")
        await control.patch_item(actor, server_id, item_id, data)
    except ValidationError as error:
        message = "; ".join(text for key, text in field_errors(error).items() if "." not in key)
        return await _server_page(request, control, viewer, server_id, alias_errors={item_id: message}, status=422)
    except (Forbidden, NotFound):  # no such item here: the error page
        raise
    except BastionError as error:  # a resource cannot be aliased; two items would share a name
        return await _server_page(
            request, control, viewer, server_id, alias_errors={item_id: error.message}, status=422
        )
    notice = "aliased" if data.alias is not None else "item_enabled" if data.enabled else "item_disabled"
    return RedirectResponse(f"/admin/servers/{server_id}?notice={notice}", status_code=303)


@router.post("/servers/{server_id}/publish")
async def publish(server_id: str, request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("servers:publish")
    await read_form(request, viewer)
    await control.set_published(actor, server_id, True)
    return RedirectResponse(f"/admin/servers/{server_id}?notice=published", status_code=303)


@router.post("/servers/{server_id}/unpublish")
async def unpublish(server_id: str, request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("servers:publish")
    await read_form(request, viewer)
    await control.set_published(actor, server_id, False)
    return RedirectResponse(f"/admin/servers/{server_id}?notice=unpublished", status_code=303)


@router.post("/servers/{server_id}/delete")
async def delete(server_id: str, request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("servers:manage")
    await read_form(request, viewer)
    await control.delete_server(actor, server_id)
    return RedirectResponse("/admin/servers?notice=deleted", status_code=303)
