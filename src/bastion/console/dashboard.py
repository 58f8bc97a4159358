"""Console pages: the dashboard (being written)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from bastion.console.render import NAVIGATION, page
from bastion.console.route import ConsoleRoute
from bastion.console.viewer import CurrentViewer

__all__ = ["router"]

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)


@router.get("")
async def dashboard(request: Request, viewer: CurrentViewer) -> Response:
    if not viewer.may("audit:read"):
        # The first section this person's roles open, else their own account page.
        for _label, path, action in NAVIGATION[1:]:
            if action is not None and viewer.may(action):
                return RedirectResponse(path, status_code=303)
        return RedirectResponse("/admin/account", status_code=303)
    return page(request, "dashboard.html", viewer=viewer)
