"""Signing in to the console and out of it.

The sign-in form carries a CSRF token too (login CSRF): a hash of a random,
HttpOnly, SameSite=Strict cookie set with the form, which another site can
neither read nor send. A successful sign-in sets the same session cookie as
`POST /auth/session`, with the same rate limit and lockout.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from bastion.audit.sink import note
from bastion.console.render import page
from bastion.console.route import ConsoleRoute
from bastion.console.viewer import CurrentViewer, check_csrf
from bastion.errors import BastionError, Forbidden
from bastion.identity.tokens import same_secret
from bastion.web.authserver import AuthServer
from bastion.web.cookies import delete_cookie, read_cookie, set_cookie
from bastion.web.deps import Auth, attempt, limit
from bastion.web.federation import console_sign_in
from bastion.web.pages import backing_off, console_path
from bastion.web.providers import sign_in_targets
from bastion.web.session_api import end_session, new_session, session_claims, start_session

__all__ = ["router"]

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)

_FORM_COOKIE = "bastion_console_login"


def _form_token(cookie: str) -> str:
    return hashlib.sha256(b"bastion-console-login:" + cookie.encode()).hexdigest()


async def _form(request: Request, *, next_path: str, error: str | None = None, status: int = 200) -> Response:
    auth: AuthServer = request.app.state.auth
    cookie = read_cookie(request, _FORM_COOKIE, auth.issuer) or secrets.token_urlsafe(32)
    providers = auth.settings.oidc_providers
    response = page(
        request,
        "login.html",
        viewer=None,
        status=status,
        error=error,
        next=next_path,
        csrf=_form_token(cookie),
        providers=[provider.name for provider in providers],
        redirect_to=await sign_in_targets(request, auth),  # "Sign in with …" redirects there
    )
    set_cookie(response, _FORM_COOKIE, cookie, auth.issuer, max_age=3600, samesite="strict")
    return response


def _check_form(request: Request, csrf: str) -> None:
    cookie = read_cookie(request, _FORM_COOKIE, request.app.state.auth.issuer)
    if not cookie or not same_secret(csrf, _form_token(cookie)):
        raise Forbidden("the sign-in form expired or came from elsewhere: reload the page and sign in again")


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    return await _form(request, next_path=console_path(next))


@router.post("/login")
async def login(
    request: Request,
    auth: Auth,
    username: Annotated[str, Form(max_length=255)],
    password: Annotated[str, Form(max_length=1024)],
    csrf: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/admin",
) -> Response:
    _check_form(request, csrf)
    try:
        await limit(request, "sign-in")
        user = await auth.logins.verify(attempt(request, username, password))
    except BastionError as error:
        page = await _form(request, next_path=console_path(next), error=error.message, status=error.http_status)
        return backing_off(page, error)
    note(request.scope, principal=user.id, tenant=user.tenant_id)
    response = RedirectResponse(console_path(next), status_code=303)
    await start_session(request, response, auth, new_session(auth, user.id, user.username))
    delete_cookie(response, _FORM_COOKIE, auth.issuer, samesite="strict")
    return response


@router.post("/login/{provider}")
async def login_elsewhere(
    request: Request,
    auth: Auth,
    provider: Annotated[str, Path(max_length=64)],
    csrf: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/admin",
) -> Response:
    """Sign in at a configured identity provider; its callback opens the console session."""
    _check_form(request, csrf)
    try:
        return await console_sign_in(request, auth, provider, console_path(next))
    except BastionError as error:  # unknown or unreachable provider: the password form still works
        page = await _form(request, next_path=console_path(next), error=error.message, status=error.http_status)
        return backing_off(page, error)


@router.post("/logout")
async def logout(
    request: Request, viewer: CurrentViewer, auth: Auth, csrf: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    """Sign out: the session ends on every replica, not only in this browser (`end_session`)."""
    check_csrf(viewer, csrf)
    response = RedirectResponse("/admin/login", status_code=303)
    await end_session(response, auth, await session_claims(request, auth))
    return response
