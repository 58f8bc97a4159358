"""Server-rendered pages of the identity plane (Jinja2, autoescaped, no script at all)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import Response

from bastion.errors import BastionError

__all__ = ["backing_off", "console_path", "csp_source", "render"]

R = TypeVar("R", bound=Response)

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")  # RFC 3986 §3.1, as urlsplit lowercases it
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")  # a name or IPv4, as urlsplit lowercases it
_IPV6 = re.compile(r"[0-9a-f:.]{2,45}")  # a bracketed address, its brackets taken off by urlsplit


def backing_off(response: R, error: BastionError) -> R:
    """`response` with `Retry-After` when `error` carries one (a limit reached, an account locked,
    an outage): browsers and clients back off, on a page as on the API."""
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        response.headers["retry-after"] = str(retry_after)
    return response


def csp_source(target: str) -> str | None:
    """The CSP source expression (scheme, host and port) of a URL, or None. Rebuilt from the parts
    it checked, never copied: a host with a space or a `;` (a client's redirect URI, as its
    metadata document gave it) would add directives of its own to the header."""
    parts = urlsplit(target)
    if parts.scheme in ("http", "https") and parts.netloc:
        try:
            port = parts.port
        except ValueError:
            return None
        host = parts.hostname or ""
        if _HOST.fullmatch(host):
            authority = host
        elif _IPV6.fullmatch(host):
            authority = f"[{host}]"
        else:
            return None
        return f"{parts.scheme}://{authority}" + (f":{port}" if port is not None else "")
    if _SCHEME.fullmatch(parts.scheme):
        # A native app's private-use scheme (RFC 8252 §7.1) is allowed as a scheme-source.
        return f"{parts.scheme}:"
    return None


def _csp(form_targets: Sequence[str]) -> str:
    # Forms post to Bastion, whose answer may redirect elsewhere (to the client, or to an
    # identity provider): browsers apply form-action to that redirect too.
    sources = dict.fromkeys(["'self'", *(s for s in map(csp_source, form_targets) if s)])
    targets = " ".join(sources)
    return f"default-src 'none'; style-src 'self'; img-src 'self'; form-action {targets}; frame-ancestors 'none'"


def render(template: str, *, status: int = 200, redirect_to: Sequence[str] = (), **context: Any) -> HTMLResponse:
    """`redirect_to`: where the page's forms may end up after Bastion's redirect."""
    html = _env.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={"content-security-policy": _csp(redirect_to)})


def console_path(target: str | None) -> str:
    """`target` if it is a path inside the admin console, else `/admin`.

    Never another site (an open redirect), never `//host`, and never a path the browser resolves
    to somewhere outside /admin (`/admin/../oauth/...`, `/admin/%2e%2e/...`): from there a
    same-site page that redirects (an OAuth error to a registered redirect URI) would carry the
    person off-site. Browsers drop tabs and newlines from URLs, so none may be in it.
    """
    if not target or "\\" in target or not target.isprintable():
        return "/admin"
    path = target.split("?", 1)[0].split("#", 1)[0]
    if path.split("/")[:2] != ["", "admin"] or any(part in (".", "..") for part in unquote(path).split("/")):
        return "/admin"
    return target
