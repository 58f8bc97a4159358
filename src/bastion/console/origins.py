"""Origins in the console: the list, registration (a connector request), and one origin's page with
its discovered items, the review of the request, refresh, delete, and the re-approval of a
quarantined item after reading its definition diff."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from bastion.admin.actor import Actor
from bastion.admin.deps import ControlDep
from bastion.admin.schemas import ItemApprovalIn, OriginIn, ReviewIn
from bastion.console.forms import VISIBILITIES, FormData, field_errors, lines, placement, read_form
from bastion.console.render import page
from bastion.console.route import ConsoleRoute
from bastion.console.viewer import CurrentViewer, Viewer
from bastion.errors import BastionError, Conflict, Forbidden

__all__ = ["diff_lines", "router"]

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)

_NOTICES = {
    "registered": "The origin is registered: a connector admin reviews the request before it can be used.",
    "approved": "The connector request is approved: its items can be added to virtual servers.",
    "rejected": "The connector request is rejected: none of its items is served.",
    "refreshed": "Discovery ran again: the items below are what the origin offers now.",
    "deleted": "The origin is deleted, and its items are gone from every virtual server.",
    "item_approved": "The item's current definition is approved: it is served again.",
}
_TRANSPORTS = ("http", "stdio")
_REGISTER_DEFAULTS: FormData = {"transport": "http", "visibility": "tenant"}


def diff_lines(change: str) -> list[tuple[str, str]]:
    """A unified diff as (css class, line): additions and deletions marked; the file headers before
    the first hunk, the hunk headers and the context lines plain."""
    marked: list[tuple[str, str]] = []
    in_hunk = False
    for line in change.splitlines():
        in_hunk = in_hunk or line.startswith("@@")
        if in_hunk and line.startswith("+"):
            marked.append(("diff-add", line))
        elif in_hunk and line.startswith("-"):
            marked.append(("diff-del", line))
        else:
            marked.append(("", line))
    return marked


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
        "origins.html",
        viewer=viewer,
        status=status,
        notices=_NOTICES,
        origins=await control.list_origins(actor),
        transports=_TRANSPORTS,
        visibilities=VISIBILITIES,
        values=values or _REGISTER_DEFAULTS,
        errors=errors or {},
    )


async def _origin_page(
    request: Request,
    control: ControlDep,
    viewer: Viewer,
    origin_id: str,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    origin = await control.get_origin(viewer.actor("origins:read"), origin_id)
    return page(
        request,
        "origin.html",
        viewer=viewer,
        status=status,
        notices=_NOTICES,
        origin=origin,
        quarantined=sum(1 for item in origin.items if item.quarantined),
        diff_lines=diff_lines,
        errors=errors or {},
    )


def _origin_in(form: FormData) -> OriginIn:
    transport = form.get("transport", "")
    url = str(form.get("url") or "").strip()
    command = lines(form, "command")
    return OriginIn.model_validate(
        {
            "name": form.get("name", ""),
            "transport": transport,
            # The field the other transport uses is ignored (the form shows both).
            "url": (url or None) if transport != "stdio" else None,
            "command": (command or None) if transport == "stdio" else None,
            "timeout_seconds": form.get("timeout_seconds") or None,
            **placement(form),
        }
    )


@router.get("/origins")
async def origins(request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    return await _list_page(request, control, viewer, viewer.actor("origins:read"))


@router.post("/origins")
async def register(request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("origins:manage")
    form = await read_form(request, viewer)
    try:
        data = _origin_in(form)
    except ValidationError as error:
        errors = field_errors(error)
        return await _list_page(
            request, control, viewer, viewer.actor("origins:read"), values=form, errors=errors, status=422
        )
    try:
        created = await control.create_origin(actor, data)
    except Forbidden:
        raise
    except BastionError as error:  # a command outside the stdio allowlist, a name taken, an unknown team
        errors = {"_": error.message}
        return await _list_page(
            request, control, viewer, viewer.actor("origins:read"), values=form, errors=errors, status=422
        )
    return RedirectResponse(f"/admin/origins/{created.id}?notice=registered", status_code=303)


@router.get("/origins/{origin_id}")
async def origin(origin_id: str, request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    return await _origin_page(request, control, viewer, origin_id)


@router.post("/origins/{origin_id}/review")
async def review(origin_id: str, request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("connectors:approve")
    form = await read_form(request, viewer)
    try:
        fields = {"decision": form.get("decision", ""), "note": form.get("note", "")}
        data = ReviewIn.model_validate({**fields, "catalog_digest": form.get("catalog_digest") or None})
    except ValidationError as error:
        return await _origin_page(request, control, viewer, origin_id, errors=field_errors(error), status=422)
    try:
        await control.review_origin(actor, origin_id, data)
    except Conflict as error:  # the items changed since this page was shown: show them again
        return await _origin_page(
            request, control, viewer, origin_id, errors={"decision": error.message}, status=error.http_status
        )
    notice = "approved" if data.decision == "approve" else "rejected"
    return RedirectResponse(f"/admin/origins/{origin_id}?notice={notice}", status_code=303)


@router.post("/origins/{origin_id}/refresh")
async def refresh(origin_id: str, request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("origins:manage")
    await read_form(request, viewer)
    await control.refresh_origin(actor, origin_id)
    return RedirectResponse(f"/admin/origins/{origin_id}?notice=refreshed", status_code=303)


@router.post("/origins/{origin_id}/items/approve")
async def approve_item(origin_id: str, request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("connectors:approve")
    form = await read_form(request, viewer)
    try:
        item = ItemApprovalIn.model_validate(
            {"kind": form.get("kind", ""), "name": form.get("name", ""), "digest": form.get("digest", "")}
        )
        await control.approve_item(actor, origin_id, item)
    except ValidationError as error:
        message = "; ".join(f"{key}: {text}" for key, text in field_errors(error).items() if "." not in key)
        return await _origin_page(request, control, viewer, origin_id, errors={"_": message}, status=422)
    except Forbidden:
        raise
    except BastionError as error:  # changed again since it was reviewed (409), or no longer offered
        return await _origin_page(
            request, control, viewer, origin_id, errors={"_": error.message}, status=error.http_status
        )
    return RedirectResponse(f"/admin/origins/{origin_id}?notice=item_approved", status_code=303)


@router.post("/origins/{origin_id}/delete")
async def delete(origin_id: str, request: Request, control: ControlDep, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("origins:manage")
    await read_form(request, viewer)
    await control.delete_origin(actor, origin_id)
    return RedirectResponse("/admin/origins?notice=deleted", status_code=303)
