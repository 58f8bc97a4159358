"""Sign-in through an external OpenID provider: /oauth/federate/{provider} → the provider → callback.

The sign-in page's "Sign in with …" form posts the pending authorization request
here. Bastion sends the browser to the provider with a `state` that is a signed
auth-session token carrying that request and a hash of a per-flow secret; the
secret itself stays in an HttpOnly cookie scoped to the callback path. The
callback accepts the answer only with both (RFC 6749 §10.12), lets
`bastion.oauth.federation` exchange and validate it, provisions the person as a
federated user, and then continues exactly as a password sign-in does
(`bastion.web.signin.sign_in`): the same login cookie, then consent.

The admin console's "Sign in with …" starts the same round trip (`console_sign_in`):
its state names a console path instead of a request, and the callback opens a
console session and continues there (`_console_session`).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import QueryParams

from bastion.bus import ChangeEvent
from bastion.errors import AccessDenied, BadRequest, BastionError, Forbidden
from bastion.oauth.authorize import AuthorizationRequest
from bastion.oauth.federation import BrowserBinding, FederatedIdentity, RelyingParty
from bastion.store.repos.users import FederatedLogin, record_login, save_federated
from bastion.store.tenancy import SYSTEM
from bastion.web.authserver import AuthServer
from bastion.web.cookies import delete_cookie, read_cookie, set_cookie
from bastion.web.deps import Auth, client_address, limit, same_site
from bastion.web.pages import console_path, render
from bastion.web.providers import party, sign_in_targets
from bastion.web.session_api import leave_session, new_session, start_session
from bastion.web.signin import error_page, login_page, read_request, sign_in

__all__ = ["router"]

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

_COOKIE = "bastion_federate"
_PURPOSE = "federate"
_MAX_COOKIE = 128  # the secret is 43 characters; anything much longer is not ours


def _flow_cookie(provider: str) -> str:
    # One per provider (all are Path=/, see bastion.web.cookies): sign-ins started at two providers
    # at once, in two tabs, do not overwrite each other. Hashed: a provider's name is not a cookie token.
    return f"{_COOKIE}_{hashlib.sha256(provider.encode()).hexdigest()[:12]}"


def _set_flow_cookie(response: Response, auth: AuthServer, provider: str, secret: str | None) -> None:
    """Set the flow's secret, or (None) delete it. Lax: the provider's redirect back is a top-level GET."""
    if secret is None:
        delete_cookie(response, _flow_cookie(provider), auth.issuer, samesite="lax")
    else:
        lifetime = auth.settings.login_session_seconds
        set_cookie(response, _flow_cookie(provider), secret, auth.issuer, max_age=lifetime, samesite="lax")


@router.post("/oauth/federate/{provider}")
async def start(
    request: Request,
    auth: Auth,
    provider: str,
    request_token: Annotated[str, Form(alias="request", max_length=16_384)],
) -> Response:
    try:
        same_site(request, auth)
        authz = read_request(auth, request_token)
    except BastionError as error:
        return error_page(error)
    try:
        return await _to_provider(request, auth, provider, {"request": authz.to_claims()})
    except BastionError as error:  # the provider is unknown or unreachable: the password form still works
        targets = await sign_in_targets(request, auth)
        return login_page(auth, authz, targets=targets, error=error.message, status=error.http_status)


async def console_sign_in(request: Request, auth: AuthServer, provider: str, next_path: str) -> Response:
    """Start a sign-in to the admin console at `provider`; the callback opens a console session and
    continues at `next_path` (a console path the caller has checked). BastionError if it cannot start.

    The session this browser held ends here, not at the callback: the provider's answer arrives
    without the session cookie (SameSite=Strict), so the callback cannot know it (`leave_session`)."""
    response = await _to_provider(request, auth, provider, {"console": next_path})
    await leave_session(request, response, auth)
    return response


async def _to_provider(request: Request, auth: AuthServer, provider: str, destination: dict[str, Any]) -> Response:
    """Send the browser to the provider with a state naming where the sign-in continues."""
    binding = BrowserBinding.new()
    state = auth.sessions.issue(provider, purpose=_PURPOSE, extra={**destination, "binding": binding.state_binding})
    url = await party(request, auth, provider).authorization_url(state=state, binding=binding)
    response = RedirectResponse(url, status_code=303)  # See Other: the browser GETs the provider
    _set_flow_cookie(response, auth, provider, binding.secret)
    return response


def _resume(
    auth: AuthServer, provider: str, state: str | None, cookie: str | None
) -> tuple[AuthorizationRequest | str, BrowserBinding]:
    """Where the sign-in continues (the pending authorization request, or a console path) and this
    browser's flow secret, or Forbidden (RFC 6749 §10.12: CSRF)."""
    refused = Forbidden(
        "this sign-in answer has no valid state for this browser (missing, expired or started elsewhere); "
        "start again from the application"
    )
    if not state or not cookie or len(cookie) > _MAX_COOKIE:
        raise refused
    try:
        claims = auth.sessions.verify(state, purpose=_PURPOSE)
    except BastionError:
        raise refused from None
    binding = BrowserBinding(cookie)
    bound = claims.get("binding")
    if claims["sub"] != provider or not isinstance(bound, str):
        raise refused
    if not secrets.compare_digest(bound.encode(), binding.state_binding.encode()):
        raise refused
    console = claims.get("console")
    if isinstance(console, str):
        return console_path(console), binding  # checked when the flow began; checked again here
    return AuthorizationRequest.from_claims(claims["request"]), binding


async def _identify(party: RelyingParty, params: QueryParams, binding: BrowserBinding) -> FederatedIdentity:
    error = params.get("error")
    if error is not None:  # OIDC Core §3.1.2.6: the provider declined; its code is shown, its prose is not
        reason = error if error.isidentifier() and len(error) <= 64 else "an error"
        raise AccessDenied(f"{party.config.name} did not sign you in ({reason})")
    code = params.get("code")
    if not code:
        raise BadRequest(f"{party.config.name}'s answer carries no authorization code")
    return await party.finish(code=code, iss=params.get("iss"), binding=binding)


async def _record(auth: AuthServer, request: Request, username: str, user_id: str | None, outcome: str) -> None:
    ip, agent = client_address(request), request.headers.get("user-agent", "")
    async with auth.db.session(SYSTEM) as session:
        await record_login(session, username=username, user_id=user_id, outcome=outcome, ip=ip, user_agent=agent)
    log.info("login", outcome=outcome, user=username[:64], ip=ip, method="federated")


async def _console_session(request: Request, auth: AuthServer, user_id: str, username: str, next_path: str) -> Response:
    """Open the console session, then continue at `next_path` from a page of Bastion's own: the
    session cookie is SameSite=Strict, so a redirect chain that began at the provider's site would
    arrive without it; a navigation started by this page carries it."""
    response = render("signed_in.html", next_path=next_path, username=username)
    response.headers["cache-control"] = "no-store"
    await start_session(request, response, auth, new_session(auth, user_id, username))
    return response


@router.get("/oauth/federate/{provider}/callback")
async def callback(request: Request, auth: Auth, provider: str) -> Response:
    try:
        relying = party(request, auth, provider)
        destination, binding = _resume(
            auth, provider, request.query_params.get("state"), read_cookie(request, _flow_cookie(provider), auth.issuer)
        )
    except BastionError as error:
        return error_page(error)
    authz = destination if isinstance(destination, AuthorizationRequest) else None
    try:
        await limit(request, "sign-in")  # each answer costs a token request: the sign-in limit
        identity = await _identify(relying, request.query_params, binding)
        login = FederatedLogin(
            identity.provider, identity.subject, identity.username, identity.roles, tenant=identity.tenant
        )
        async with auth.db.session(SYSTEM) as session:
            user, changed = await save_federated(session, login)
        if changed:  # a new user, or new roles: in the snapshot before the consent decision reads it
            await auth.bus.publish(ChangeEvent("users", user.id))
    except BastionError as error:  # back to the sign-in page, which says why and still offers every way in
        await _record(auth, request, f"{provider}:?", None, "failure")
        if authz is None:
            response = error_page(error, back_to="/admin/login")
        else:
            targets = await sign_in_targets(request, auth)
            response = login_page(auth, authz, targets=targets, error=error.message, status=error.http_status)
    else:
        await _record(auth, request, user.username, user.id, "success")
        if authz is None:
            response = await _console_session(request, auth, user.id, user.username, str(destination))
        else:
            response = await sign_in(auth, authz, user.id)
    _set_flow_cookie(response, auth, provider, None)  # one flow, one answer
    return response
