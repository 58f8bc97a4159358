"""Bastion's browser cookies, set one way: HttpOnly, Path=/, no Domain, and under TLS Secure with the
`__Host-` name prefix (RFC 6265bis §4.1.3.2), which browsers accept only from the host itself: a page
on a sibling subdomain cannot plant one (a session fixed on a victim's browser, say). Over plain HTTP
(a loopback setup) the plain name, which browsers would refuse with the prefix."""

from __future__ import annotations

from typing import Literal

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["LOGIN_COOKIE", "cookie_name", "delete_cookie", "read_cookie", "set_cookie"]

# The authorization flow's sign-in (`/oauth/login`): who the browser is signed in as there.
LOGIN_COOKIE = "bastion_login"

_HOST_PREFIX = "__Host-"


def _secure(issuer: str) -> bool:
    return URL(issuer).scheme == "https"


def cookie_name(name: str, issuer: str) -> str:
    """The name the browser holds `name` under, for a Bastion reached at `issuer`."""
    return _HOST_PREFIX + name if _secure(issuer) else name


def read_cookie(request: Request, name: str, issuer: str) -> str | None:
    return request.cookies.get(cookie_name(name, issuer))


def set_cookie(
    response: Response, name: str, value: str, issuer: str, *, max_age: int, samesite: Literal["lax", "strict"]
) -> None:
    response.set_cookie(
        cookie_name(name, issuer),
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=_secure(issuer),
        samesite=samesite,
    )


def delete_cookie(response: Response, name: str, issuer: str, *, samesite: Literal["lax", "strict"]) -> None:
    response.delete_cookie(
        cookie_name(name, issuer), path="/", httponly=True, secure=_secure(issuer), samesite=samesite
    )
