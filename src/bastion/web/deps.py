"""FastAPI dependencies of the identity plane: the AuthServer and the rate limits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import URL

from bastion.audit.sink import note
from bastion.errors import BadRequest, Forbidden
from bastion.http.client_ip import ClientIp
from bastion.logins import Attempt
from bastion.storable import storable
from bastion.web.authserver import AuthServer
from bastion.web.ratelimit import RouteLimits

__all__ = ["Auth", "attempt", "client_address", "limit", "note_person", "same_site", "single_values"]


def _auth(request: Request) -> AuthServer:
    server: AuthServer = request.app.state.auth
    return server


Auth = Annotated[AuthServer, Depends(_auth)]


_PEER_ONLY = ClientIp()  # an app built without Services' resolver trusts no proxy


def client_address(request: Request) -> str:
    """The caller's address: the socket peer, or behind `BASTION_TRUSTED_PROXIES` the address
    they forwarded (`bastion.http.client_ip`, the same resolver as the data plane's)."""
    resolver: ClientIp = getattr(request.app.state, "client_ip", _PEER_ONLY)
    return resolver(request.scope)


async def limit(request: Request, route: str) -> None:
    """Count one `route` request from the caller's address; TooManyRequests beyond the limit."""
    limits: RouteLimits = request.app.state.limits
    await limits.hit(route, client_address(request))


def attempt(request: Request, username: str, password: str) -> Attempt:
    """A password login attempt, with where it came from (for lockout and the login events)."""
    username = storable(username)  # a NUL names no user, and must not fail the attempt's record
    note(request.scope, target=username[:255])
    return Attempt(
        username=username,
        password=password,
        ip=client_address(request),
        user_agent=request.headers.get("user-agent", ""),
    )


def same_site(request: Request, auth: AuthServer) -> None:
    """Forms of Bastion's pages are posted from its pages only: a cross-site post (login CSRF, which
    signs the victim's browser in as someone else, for example) is refused. Browsers send `Origin` on
    every POST and `Sec-Fetch-Site` on every request; other clients send neither and are not refused."""
    origin = request.headers.get("origin")
    fetch_site = request.headers.get("sec-fetch-site")
    issuer = URL(auth.issuer)
    if fetch_site in ("cross-site", "same-site"):
        raise Forbidden("this form was posted from another site; nothing was done")
    if origin == "null":
        # Bastion's pages are sent with `Referrer-Policy: no-referrer`, under which browsers post
        # `Origin: null` from the very same page; so does a sandboxed frame elsewhere. Only the
        # browser's own `Sec-Fetch-Site` tells them apart.
        if fetch_site != "same-origin":
            raise Forbidden("this form was posted from another site; nothing was done")
        return
    if origin is not None and origin != f"{issuer.scheme}://{issuer.netloc}":
        raise Forbidden("this form was posted from another site; nothing was done")


def single_values(items: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """OAuth parameters (a query's or a form's): each given once (RFC 6749 §3.1), plain text, free of
    NUL, which no parameter holds and PostgreSQL's text refuses."""
    values: dict[str, str] = {}
    for key, value in items:
        if not isinstance(value, str):
            raise BadRequest(f"{key} must be a plain form value")
        if key in values:
            raise BadRequest(f"{key} is given more than once (RFC 6749 §3.1)")
        if "\x00" in key or "\x00" in value:
            raise BadRequest(f"{storable(key)} holds a NUL character")
        values[key] = value
    return values


def note_person(request: Request, auth: AuthServer, user_id: str) -> None:
    """Whom a signed-in person's request acts for, in its audit record: them, in their tenant's
    trail (without it, a consent or a connection changed was recorded for nobody, by default)."""
    member = auth.holder.current.members.get(user_id)
    note(request.scope, principal=user_id, tenant=member.tenant_id if member is not None else None)
