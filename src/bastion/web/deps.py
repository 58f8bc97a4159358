"""FastAPI dependencies of the identity plane: the AuthServer and the rate limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bastion.logins import Attempt
from bastion.web.authserver import AuthServer
from bastion.web.ratelimit import RouteLimits

__all__ = ["Auth", "attempt", "client_address", "limit"]


def _auth(request: Request) -> AuthServer:
    server: AuthServer = request.app.state.auth
    return server


Auth = Annotated[AuthServer, Depends(_auth)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


async def limit(request: Request, route: str) -> None:
    """Count one `route` request from the caller's address; TooManyRequests beyond the limit."""
    limits: RouteLimits = request.app.state.limits
    await limits.hit(route, client_address(request))


def attempt(request: Request, username: str, password: str) -> Attempt:
    """A password login attempt, with where it came from (for lockout and the login events)."""
    return Attempt(
        username=username,
        password=password,
        ip=client_address(request),
        user_agent=request.headers.get("user-agent", ""),
    )
