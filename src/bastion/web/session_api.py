"""The auth-session API: a signed, short-lived session for Bastion's own UI and connection flows.

POST /auth/session signs a person in (password, with lockout) and sets an
HttpOnly, SameSite=Strict cookie holding a session JWT signed by Bastion's key
(verifiable against /oauth/jwks.json); GET tells who is signed in; DELETE
signs out: the session's id is marked spent in the store, so its token (a copy
of the cookie, a renewal of it) is refused from then on, on every replica. The
answer to POST carries a CSRF token derived from the cookie, for forms and
state-changing calls of the UI. /auth/consents lists the
signed-in user's consents, and withdrawing one revokes what it allowed.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from bastion.audit.sink import note
from bastion.errors import BastionError, Forbidden, Unauthenticated, Unavailable
from bastion.identity.tokens import same_secret, spent_key
from bastion.store.repos.consents import list_consents, withdraw_consent
from bastion.store.repos.spent import is_spent, spend
from bastion.web.authserver import AuthServer
from bastion.web.cookies import LOGIN_COOKIE, delete_cookie, read_cookie, set_cookie
from bastion.web.deps import Auth, attempt, limit, note_person, same_site

__all__ = [
    "SESSION_COOKIE",
    "cookie_claims",
    "end_session",
    "leave_session",
    "new_session",
    "renewed_session",
    "router",
    "session_claims",
    "session_csrf",
    "set_session_cookie",
    "start_session",
]

router = APIRouter(prefix="/auth", include_in_schema=False)

SESSION_COOKIE = "bastion_session"
_PURPOSE = "session"


class SessionIn(BaseModel):
    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024)


def _session_id(claims: Mapping[str, Any]) -> str:
    """The session's id: kept by renewals (`renewed_session`); a token from before session ids
    had its own."""
    return str(claims.get("sid") or claims["jti"])


def session_csrf(claims: Mapping[str, Any]) -> str:
    """The CSRF token of a session: a hash of its id, a claim of the HttpOnly cookie's signed token
    that another site can neither read nor forge. The id outlives renewals, so a form rendered
    before one still posts after it."""
    return hashlib.sha256(b"bastion-session-csrf:" + _session_id(claims).encode()).hexdigest()


async def session_claims(request: Request, auth: AuthServer) -> dict[str, Any]:
    """The browser's session's claims; its person is whom the request's audit record names."""
    cookie = read_cookie(request, SESSION_COOKIE, auth.issuer)
    if not cookie:
        raise Unauthenticated("not signed in")
    claims = await cookie_claims(auth, cookie)
    note_person(request, auth, str(claims["sub"]))
    return claims


async def cookie_claims(auth: AuthServer, cookie: str) -> dict[str, Any]:
    """The claims of a session cookie's token: InvalidToken when it is not a live session token,
    Unauthenticated when its session was signed out (one read of the store: every replica agrees)."""
    claims = auth.sessions.verify(cookie, purpose=_PURPOSE)
    if await is_spent(auth.db, spent_key("session", _session_id(claims))):
        raise Unauthenticated("this session was signed out; sign in again")
    return claims


@router.post("/session")
async def sign_in(data: SessionIn, request: Request, auth: Auth) -> JSONResponse:
    same_site(request, auth)  # login CSRF: a cross-site fetch could sign the browser in as its own user
    await limit(request, "sign-in")
    user = await auth.logins.verify(attempt(request, data.username, data.password))
    note(request.scope, principal=user.id, tenant=user.tenant_id)
    cookie = new_session(auth, user.id, user.username)
    claims = auth.sessions.verify(cookie, purpose=_PURPOSE)  # just issued: no store read
    body = {"user_id": user.id, "username": user.username, "expires_at": claims["exp"], "csrf": session_csrf(claims)}
    response = JSONResponse(body, headers={"cache-control": "no-store"})
    await start_session(request, response, auth, cookie)
    return response


def new_session(auth: AuthServer, user_id: str, username: str) -> str:
    # `sid`: the session's id, kept by renewals; the first token's `iat` is when it began.
    extra = {"name": username, "sid": secrets.token_urlsafe(16)}
    return auth.sessions.issue(user_id, purpose=_PURPOSE, extra=extra)


def renewed_session(auth: AuthServer, claims: Mapping[str, Any]) -> str | None:
    """A fresh cookie for a session in use past half its lifetime, within
    `BASTION_CONSOLE_SESSION_MAX_SECONDS` of signing in; None when none is due."""
    return auth.sessions.renew(claims, max_age=auth.settings.console_session_max_seconds)


def set_session_cookie(response: Response, auth: AuthServer, cookie: str) -> None:
    set_cookie(
        response, SESSION_COOKIE, cookie, auth.issuer, max_age=auth.settings.login_session_seconds, samesite="strict"
    )


async def start_session(request: Request, response: Response, auth: AuthServer, cookie: str) -> None:
    """A sign-in's new session cookie on `response`, ending the session the browser held before:
    someone signing in on a browser another person used leaves no copy of that person's cookie
    alive (it would otherwise last until it expired, renewals included)."""
    await _end_held_session(request, auth)
    _forget_login(response, auth)
    set_session_cookie(response, auth, cookie)


async def leave_session(request: Request, response: Response, auth: AuthServer) -> None:
    """A sign-in whose answer will arrive without the session cookie (an identity provider's
    redirect back: the cookie is SameSite=Strict) ends the browser's session as it starts, the last
    request that carries the cookie, for the reason `start_session` does."""
    await _end_held_session(request, auth)
    _forget_login(response, auth)
    delete_cookie(response, SESSION_COOKIE, auth.issuer, samesite="strict")


async def _end_held_session(request: Request, auth: AuthServer) -> None:
    previous = read_cookie(request, SESSION_COOKIE, auth.issuer)
    if previous:
        try:
            await _spend_session(auth, await cookie_claims(auth, previous))
        except Unavailable:
            raise  # the session could not be ended: 503, and the sign-in does not go on as if it had
        except BastionError:
            pass  # not a live session (expired, signed out, another key): nothing to end


async def end_session(response: Response, auth: AuthServer, claims: Mapping[str, Any] | None) -> None:
    """Sign out: drop the browser's cookie and, given the session's claims, end the session itself."""
    if claims is not None:
        await _spend_session(auth, claims)
    _forget_login(response, auth)
    delete_cookie(response, SESSION_COOKIE, auth.issuer, samesite="strict")


def _forget_login(response: Response, auth: AuthServer) -> None:
    """Signing out, or someone signing in, also drops the authorization flow's sign-in cookie: left,
    the next person to authorize an application on this browser did it as the one before."""
    delete_cookie(response, LOGIN_COOKIE, auth.issuer, samesite="lax")


async def _spend_session(auth: AuthServer, claims: Mapping[str, Any]) -> None:
    """The session's id is spent until the last moment any token of it could be accepted (this
    one's expiry, or a renewal's, which comes at most `BASTION_CONSOLE_SESSION_MAX_SECONDS` after
    signing in), so a copy of its cookie is refused from now on, on every replica."""
    began = int(claims.get("auth_time", claims["iat"]))
    last = max(float(claims["exp"]), float(began + auth.settings.console_session_max_seconds))
    await spend(auth.db, spent_key("session", _session_id(claims)), last, auth.now())


@router.get("/session")
async def whoami(request: Request, auth: Auth) -> JSONResponse:
    claims = await session_claims(request, auth)
    member = auth.holder.current.members.get(claims["sub"])
    if member is None:  # removed, disabled or moved since signing in
        raise Unauthenticated("this account is no longer active here; sign in again")
    # The name as it is now: the session's claim is the one it began with.
    return JSONResponse({"user_id": claims["sub"], "username": member.username, "expires_at": claims["exp"]})


@router.get("/consents")
async def consents(request: Request, auth: Auth) -> JSONResponse:
    """The signed-in user's consents: which application may use which virtual server, with what scopes."""
    claims = await session_claims(request, auth)
    views = await list_consents(auth.db, claims["sub"])
    return JSONResponse([{**asdict(view), "created_at": view.created_at.isoformat()} for view in views])


@router.delete("/consents/{consent_id}")
async def withdraw(consent_id: str, request: Request, auth: Auth) -> Response:
    """Withdraw a consent: the application's tokens for that server stop working at once."""
    claims = await session_claims(request, auth)
    # A state-changing call from the UI carries the CSRF token it was given at sign-in.
    if not same_secret(request.headers.get("x-csrf-token", ""), session_csrf(claims)):
        raise Forbidden("the X-CSRF-Token header is missing or wrong")
    await withdraw_consent(auth.db, auth.bus, claims["sub"], consent_id)
    return Response(status_code=204)


@router.delete("/session")
async def sign_out(request: Request, auth: Auth) -> Response:
    try:
        claims: dict[str, Any] | None = await session_claims(request, auth)
    except Unavailable:
        raise  # the session could not be ended: 503, so the browser does not take it for done
    except BastionError:  # no live session: there is only the cookie to drop
        claims = None
    response = Response(status_code=204)
    await end_session(response, auth, claims)
    return response
