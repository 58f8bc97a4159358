"""The browser side of authorization: /oauth/authorize → sign in → consent → redirect with a code.

The validated authorization request travels between the pages inside a signed,
short-lived auth-session token, so any replica can continue the flow. The
signed-in user is another auth-session token in an HttpOnly cookie; the
consent form's CSRF token is derived from that cookie, which a cross-site
attacker can neither read nor set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from bastion.audit.sink import note
from bastion.errors import AccessDenied, BastionError, Forbidden
from bastion.identity.principal import SCOPE_MCP, SCOPE_MCP_READ, SCOPE_MCP_WRITE, scope_satisfied
from bastion.identity.tokens import same_secret
from bastion.oauth.authorize import AuthorizationRequest, RedirectableError
from bastion.oauth.redirects import client_proven_by
from bastion.web.authserver import AuthServer
from bastion.web.cookies import LOGIN_COOKIE, read_cookie, set_cookie
from bastion.web.deps import Auth, attempt, limit, note_person, same_site, single_values
from bastion.web.pages import backing_off, render
from bastion.web.providers import sign_in_targets

__all__ = ["error_page", "login_page", "read_request", "router", "sign_in"]

router = APIRouter(include_in_schema=False)

_COOKIE = LOGIN_COOKIE
_SCOPE_TEXT = {
    SCOPE_MCP: "use every tool, resource and prompt of this server",
    SCOPE_MCP_READ: "list and read; call read-only tools",
    SCOPE_MCP_WRITE: "call tools that change things",
    "offline_access": "stay connected without asking again (refresh tokens)",
}


def _csrf(cookie: str) -> str:
    return hashlib.sha256(b"bastion-csrf:" + cookie.encode()).hexdigest()


def _signed_in(request: Request, auth: AuthServer) -> tuple[str, str] | None:
    """(user id, cookie) of the browser's login, or None."""
    cookie = read_cookie(request, _COOKIE, auth.issuer)
    if not cookie:
        return None
    try:
        user_id = str(auth.sessions.verify(cookie, purpose="login")["sub"])
    except BastionError:
        return None
    note_person(request, auth, user_id)  # a code issued, a consent given: recorded as theirs
    return user_id, cookie


def back_to_client(error: BastionError, redirect: str) -> Response:
    """The client learns of `error` at its redirect URI (`redirect`, the error in its query) through
    a link the person follows, not at once: a URI its registrant chose (RFC 9700 §4.11.2; see
    `bastion.oauth.authorize`)."""
    return error_page(error, leave_to=redirect)


def error_page(error: BastionError, *, back_to: str | None = None, leave_to: str | None = None) -> Response:
    """`back_to`: a page of Bastion's where the person can start again (else: the application);
    `leave_to`: the application's own address for this error, shown as a link with its host."""
    leave_host = None if leave_to is None else (urlsplit(leave_to).netloc or f"{urlsplit(leave_to).scheme}:")
    page = render(
        "error.html",
        status=error.http_status,
        message=error.message,
        back_to=back_to,
        leave_to=leave_to,
        leave_host=leave_host,
    )
    return backing_off(page, error)


def _request_token(auth: AuthServer, request: AuthorizationRequest) -> str:
    return auth.sessions.issue(request.client_id[:255], purpose="authorize", extra={"request": request.to_claims()})


def read_request(auth: AuthServer, token: str) -> AuthorizationRequest:
    claims = auth.sessions.verify(token, purpose="authorize")
    return AuthorizationRequest.from_claims(claims["request"])


@router.get("/oauth/authorize")
async def authorize(request: Request, auth: Auth) -> Response:
    try:
        await limit(request, "authorize")
    except BastionError as error:  # too many requests, or the limiter unreachable
        return error_page(error)
    try:
        await auth.holder.checked()  # the servers as the shared epoch has them (see `oauth_api._guarded`)
        params = single_values(request.query_params.multi_items())
        authz = await auth.authorizer.validate(params)
    except RedirectableError as redirect:
        return back_to_client(redirect.error, redirect.redirect_uri)
    except BastionError as error:
        return error_page(error)
    signed_in = _signed_in(request, auth)
    if signed_in is None:
        return login_page(auth, authz, targets=await sign_in_targets(request, auth))
    return await _consent_or_code(auth, authz, *signed_in)


def login_page(
    auth: AuthServer,
    authz: AuthorizationRequest,
    *,
    targets: Sequence[str],
    error: str | None = None,
    status: int = 200,
) -> Response:
    """The sign-in page; `targets`: where its "Sign in with …" forms lead (`sign_in_targets`)."""
    return render(
        "login.html",
        status=status,
        # Signing in answers with the redirect to the client when consent was given before;
        # "Sign in with …" answers with the redirect to that identity provider.
        redirect_to=[authz.redirect_uri, *targets],
        request=authz,
        request_token=_request_token(auth, authz),
        error=error,
        providers=[provider.name for provider in auth.settings.oidc_providers],
    )


async def _refusal(auth: AuthServer, authz: AuthorizationRequest, user_id: str) -> Response | None:
    """access_denied back to the client when the server is not one this person may use (another
    tenant's, or one not shared with them); None when they may."""
    snapshot = await auth.holder.checked()
    member = snapshot.members.get(user_id)
    server = snapshot.servers.get(authz.server_slug)
    if member is not None and server is not None and member.sees(server.placement):
        return None
    error = AccessDenied(f"this account has no access to {authz.server_slug!r}")
    redirect = auth.authorizer.error_redirect(authz.redirect_uri, error, authz.state)
    return back_to_client(error, redirect)


async def _consent_or_code(auth: AuthServer, authz: AuthorizationRequest, user_id: str, cookie: str) -> Response:
    refused = await _refusal(auth, authz, user_id)
    if refused is not None:
        return refused
    granted = await auth.store.consented_scopes(user_id, authz.client_id, authz.server_id)
    remembered = granted is not None and all(scope_satisfied(s, granted) for s in authz.scopes)
    # RFC 8252 §8.6: a remembered consent answers at once only where the code can reach no one but
    # the client; a loopback or private-use-scheme redirect could be any local app's, which asks
    # with the client's id (public clients prove nothing more): the person is asked again.
    if remembered and client_proven_by(authz.redirect_uri):
        return RedirectResponse(await auth.authorizer.approve(authz, user_id, auth.now()), status_code=302)
    user = await auth.store.get_user(user_id)
    return render(
        "consent.html",
        redirect_to=[authz.redirect_uri],
        request=authz,
        request_token=_request_token(auth, authz),
        csrf=_csrf(cookie),
        username=user.username if user else "",
        scope_text=_SCOPE_TEXT,
    )


@router.post("/oauth/login")
async def login(
    request: Request,
    auth: Auth,
    username: Annotated[str, Form(max_length=255)],
    password: Annotated[str, Form(max_length=1024)],
    request_token: Annotated[str, Form(alias="request", max_length=16_384)],
) -> Response:
    try:
        same_site(request, auth)  # login CSRF: another site signing this browser in as its own user
        authz = read_request(auth, request_token)
    except BastionError as error:
        return error_page(error)
    try:
        await limit(request, "sign-in")
        user = await auth.logins.verify(attempt(request, username, password))
    except BastionError as error:
        note(request.scope, reason=error.message)
        targets = await sign_in_targets(request, auth)
        page = login_page(auth, authz, targets=targets, error=error.message, status=error.http_status)
        return backing_off(page, error)
    note(request.scope, principal=user.id, tenant=user.tenant_id)
    return await sign_in(auth, authz, user.id)


async def sign_in(auth: AuthServer, authz: AuthorizationRequest, user_id: str) -> Response:
    """Start the browser's login for `user_id`, then consent (or the code): password and federated sign-in alike."""
    cookie = auth.sessions.issue(user_id, purpose="login")
    response = await _consent_or_code(auth, authz, user_id, cookie)
    set_cookie(response, _COOKIE, cookie, auth.issuer, max_age=auth.settings.login_session_seconds, samesite="lax")
    return response


@router.post("/oauth/consent")
async def consent(
    request: Request,
    auth: Auth,
    request_token: Annotated[str, Form(alias="request", max_length=16_384)],
    decision: Annotated[str, Form(max_length=16)],
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    signed_in = _signed_in(request, auth)
    if signed_in is None:
        return error_page(Forbidden("your sign-in has expired; start again from the application"))
    user_id, cookie = signed_in
    if not csrf or not same_secret(csrf, _csrf(cookie)):
        return error_page(Forbidden("the consent form's CSRF token is missing or wrong; nothing was granted"))
    try:
        authz = read_request(auth, request_token)
    except BastionError as error:
        return error_page(error)
    if decision != "approve":
        return RedirectResponse(auth.authorizer.deny(authz), status_code=302)
    refused = await _refusal(auth, authz, user_id)
    if refused is not None:
        return refused
    await auth.store.save_consent(user_id, authz.client_id, authz.server_id, frozenset(authz.scopes))
    return RedirectResponse(await auth.authorizer.approve(authz, user_id, auth.now()), status_code=302)
