"""Server-rendered pages of the identity plane (Jinja2, autoescaped, no script at all)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

__all__ = ["render"]

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")  # RFC 3986 §3.1, as urlsplit lowercases it


def _csp(form_target: str | None) -> str:
    # Forms post to Bastion, whose answer may redirect to the client: browsers apply
    # form-action to that redirect too, so the client's origin is allowed there.
    targets = "'self'"
    if form_target:
        parts = urlsplit(form_target)
        if parts.scheme in ("http", "https") and parts.netloc:
            targets += f" {parts.scheme}://{parts.netloc}"
        elif parts.scheme not in ("http", "https") and _SCHEME.fullmatch(parts.scheme):
            # A native app's private-use scheme (RFC 8252 §7.1) is allowed as a scheme-source.
            targets += f" {parts.scheme}:"
    return f"default-src 'none'; style-src 'self'; img-src 'self'; form-action {targets}; frame-ancestors 'none'"


def render(template: str, *, status: int = 200, redirect_to: str | None = None, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={"content-security-policy": _csp(redirect_to)})
