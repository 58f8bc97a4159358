"""The console's pages: one Jinja2 environment (autoescaped), one strict CSP, one navigation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bastion.console.viewer import Viewer
from bastion.web.pages import csp_source

__all__ = ["CSP", "NAVIGATION", "page"]

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
    trim_blocks=True,
    lstrip_blocks=True,
)

# No inline script or style anywhere: scripts and styles come from /admin/static only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action {targets}; frame-ancestors 'none'; base-uri 'none'"
)

# (label, path, the permission that shows it); the pages themselves check the same permission.
NAVIGATION: tuple[tuple[str, str, str | None], ...] = (
    ("Dashboard", "/admin", "audit:read"),
    ("Origins", "/admin/origins", "origins:read"),
    ("Virtual servers", "/admin/servers", "servers:read"),
    ("Users & teams", "/admin/users", "users:read"),
    ("API tokens", "/admin/tokens", "tokens:create"),
    ("OAuth clients", "/admin/clients", "clients:manage"),
    ("Policies", "/admin/policies", "policies:read"),
    ("Audit", "/admin/audit", "audit:read"),
    ("My account", "/admin/account", None),
)


def page(
    request: Request,
    template: str,
    *,
    viewer: Viewer | None,
    status: int = 200,
    notices: Mapping[str, str] | None = None,
    redirect_to: Sequence[str] = (),
    **context: Any,
) -> HTMLResponse:
    """Render `template` for `viewer`. `notices`: the page's fixed messages, one of which a
    redirect after a form may name with `?notice=` (never text taken from the link itself).
    `redirect_to`: other sites a form's answer redirects to (browsers apply form-action to it)."""
    nav = [
        (label, path, path == request.url.path or (path != "/admin" and request.url.path.startswith(path + "/")))
        for label, path, action in NAVIGATION
        if viewer is not None and (action is None or viewer.may(action))
    ]
    notice = (notices or {}).get(request.query_params.get("notice", ""))
    html = _env.get_template(template).render(viewer=viewer, nav=nav, path=request.url.path, notice=notice, **context)
    targets = " ".join(dict.fromkeys(["'self'", *(s for s in map(csp_source, redirect_to) if s)]))
    headers = {"content-security-policy": CSP.format(targets=targets), "cache-control": "no-store"}
    return HTMLResponse(html, status_code=status, headers=headers)
