"""Connecting a person's account at a per-user OAuth origin: /connect/{origin} → consent → the
origin's authorization server → /connect/{origin}/callback.

The flow starts from the link a call's `ConnectionRequired` error carries: a signed ticket naming
the person, the origin and the MCP client that needs the connection. Then:

1. The browser signs in (Bastion's own session cookie), as the person the ticket names and no other.
2. A consent page names the MCP client, the origin, its authorization server, the scopes and the
   address the answer returns to (the MCP spec's confused-deputy rule: Bastion uses one client ID
   at that server for everyone, so each person approves each MCP client first). The form carries
   a CSRF token derived from the session cookie.
3. Only after approval is a `state` stored, single-use, holding the hash of a secret that only
   this browser's cookie (`__Host-` under TLS, HttpOnly, SameSite=Lax, ten minutes) holds, and
   the PKCE verifier sealed by the vault. The browser goes to the authorization server.
4. The callback takes the state (once), checks the cookie against it, RFC 9207 `iss`, exchanges
   the code with the verifier, and stores the person's tokens sealed under their own key.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import asdict
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import URL

from bastion.audit.sink import note
from bastion.bus import ChangeEvent
from bastion.errors import BadRequest, BastionError, Forbidden, NotFound, Unauthenticated, Unavailable
from bastion.identity.tokens import same_secret
from bastion.oauth import downstream
from bastion.oauth.downstream_grants import GrantKey
from bastion.store.repos.downstream import (
    ConnectAttempt,
    ConnectionView,
    approve_client,
    delete_connection,
    list_connections,
    save_grant,
    start_connect,
    take_connect,
)
from bastion.vault.downstream_oauth import OAuthOrigin, connect_owner, open_tokens, seal_tokens
from bastion.vault.envelope import VaultError
from bastion.web.authserver import AuthServer
from bastion.web.cookies import delete_cookie, read_cookie, set_cookie
from bastion.web.deps import Auth, attempt, limit, same_site
from bastion.web.pages import backing_off, render
from bastion.web.session_api import (
    cookie_claims,
    new_session,
    session_claims,
    session_csrf,
    start_session,
)
from bastion.web.signin import error_page

__all__ = ["connect_url", "connections_of", "disconnect_origin", "router"]

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

_TICKET = "connect"
_ATTEMPT_SECONDS = 600


def connect_url(auth: AuthServer, key: GrantKey, client: str) -> str:
    """The link a `ConnectionRequired` error carries: signed, naming the person, origin and client."""
    ticket = auth.sessions.issue(
        key.user_id, purpose=_TICKET, extra={"origin": key.origin_id, "tenant": key.tenant_id, "client": client}
    )
    return str(URL(f"{auth.issuer}/connect/{key.origin_id}").include_query_params(ticket=ticket))


def _browser_cookie(state_hash: str) -> str:
    # One cookie per attempt, so two connections started at once (two origins, two tabs) do not collide.
    return f"bastion_connect_{state_hash[:16]}"


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _ticket(auth: AuthServer, ticket: str, origin_id: str) -> dict[str, Any]:
    claims = auth.sessions.verify(ticket, purpose=_TICKET)
    if claims.get("origin") != origin_id:
        raise BadRequest("this connection link is for another origin")
    return claims


def _oauth_origin(auth: AuthServer, origin_id: str) -> tuple[str, OAuthOrigin]:
    spec = auth.holder.current.origins.get(origin_id)
    credential = spec.credential if spec is not None else None
    if spec is None or credential is None or credential.oauth is None:
        raise NotFound("this origin does not take per-user connections (it may have been reconfigured)")
    return spec.name, credential.oauth


def _callback(auth: AuthServer, origin_id: str) -> str:
    return f"{auth.issuer}/connect/{origin_id}/callback"


async def _client_name(auth: AuthServer, client: str) -> str:
    if client.startswith("api-token:"):
        return "an API token"
    try:
        return (await auth.clients.get(client)).client_name or client
    except BastionError:
        return client


async def _consent_page(
    auth: AuthServer, origin_id: str, ticket: str, session: Mapping[str, Any], username: str
) -> Response:
    claims = _ticket(auth, ticket, origin_id)
    name, config = _oauth_origin(auth, origin_id)
    return render(
        "connect.html",
        redirect_to=[config.server.authorization_endpoint],
        origin_name=name,
        origin_id=origin_id,
        issuer=config.server.issuer,
        scopes=(config.scope or "").split(),
        callback=_callback(auth, origin_id),
        client_id=claims["client"],
        client_name=await _client_name(auth, claims["client"]),
        username=username,
        ticket=ticket,
        csrf=session_csrf(session),
    )


@router.get("/connect/{origin_id}")
async def start(origin_id: str, ticket: str, request: Request, auth: Auth) -> Response:
    try:
        claims = _ticket(auth, ticket, origin_id)
        _oauth_origin(auth, origin_id)
        try:
            session = await session_claims(request, auth)
        except Unavailable:
            raise  # the store cannot say whether the session was signed out: the error page's 503
        except BastionError:  # not signed in here (or the cookie did not travel): sign in first
            return render("connect_signin.html", origin_id=origin_id, ticket=ticket, error=None)
        if session["sub"] != claims["sub"]:
            raise Forbidden("this link was made for another account: sign out, or open your own link")
        return await _consent_page(auth, origin_id, ticket, session, session.get("name", ""))
    except BastionError as error:
        return error_page(error)


@router.post("/connect/{origin_id}/login")
async def sign_in(
    origin_id: str,
    request: Request,
    auth: Auth,
    username: Annotated[str, Form(max_length=255)],
    password: Annotated[str, Form(max_length=1024)],
    ticket: Annotated[str, Form(max_length=8192)],
) -> Response:
    try:
        same_site(request, auth)
        claims = _ticket(auth, ticket, origin_id)
        await limit(request, "sign-in")
        user = await auth.logins.verify(attempt(request, username, password))
    except BastionError as error:
        status = error.http_status
        page = render("connect_signin.html", status=status, origin_id=origin_id, ticket=ticket, error=error.message)
        return backing_off(page, error)
    if user.id != claims["sub"]:
        return error_page(Forbidden("this link was made for another account: nothing was connected"))
    cookie = new_session(auth, user.id, user.username)
    try:
        session = await cookie_claims(auth, cookie)
        response = await _consent_page(auth, origin_id, ticket, session, user.username)
    except BastionError as error:
        return error_page(error)
    await start_session(request, response, auth, cookie)
    return response


@router.post("/connect/{origin_id}")
async def decide(
    origin_id: str,
    request: Request,
    auth: Auth,
    ticket: Annotated[str, Form(max_length=8192)],
    decision: Annotated[str, Form(max_length=16)],
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    try:
        same_site(request, auth)
        session = await session_claims(request, auth)
        if not same_secret(csrf, session_csrf(session)):
            raise Forbidden("the consent form's CSRF token is missing or wrong; nothing was connected")
        claims = _ticket(auth, ticket, origin_id)
        if session["sub"] != claims["sub"]:
            raise Forbidden("this link was made for another account: nothing was connected")
        _name, config = _oauth_origin(auth, origin_id)
        if decision != "approve":
            return render("connected.html", connected=False, origin_name=_name)
        keys = auth.db.vault
        if keys is None:
            raise BadRequest("the vault has no master key: per-user connections cannot be stored")
        # The person's approval of this MCP client, recorded before anything goes upstream.
        await approve_client(auth.db, claims["tenant"], claims["sub"], origin_id, claims["client"])
        browser, state, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        await start_connect(
            auth.db,
            ConnectAttempt(
                tenant_id=claims["tenant"],
                user_id=claims["sub"],
                origin_id=origin_id,
                browser_hash=_hash(browser),
                # Bound to this state and this authorization server: an origin reconfigured to
                # another server meanwhile makes the callback fail instead of mixing the two.
                sealed_verifier=keys.seal(verifier.encode(), connect_owner(_hash(state), config.server.issuer)),
            ),
            _hash(state),
            _ATTEMPT_SECONDS,
        )
    except VaultError as error:
        return error_page(Unavailable(f"the vault could not seal this connection attempt ({error})"))
    except BastionError as error:
        return error_page(error)
    target = downstream.authorization_url(
        config.server,
        config.client,
        _callback(auth, origin_id),
        state,
        downstream.code_challenge(verifier),
        scope=config.scope,
    )
    response = RedirectResponse(target, status_code=303)
    # Lax: the authorization server's redirect back is a cross-site top-level GET.
    set_cookie(response, _browser_cookie(_hash(state)), browser, auth.issuer, max_age=_ATTEMPT_SECONDS, samesite="lax")
    return response


@router.get("/connect/{origin_id}/callback")
async def callback(origin_id: str, request: Request, auth: Auth) -> Response:
    params = dict(request.query_params)
    state = params.get("state") or ""
    cookie_name = _browser_cookie(_hash(state))
    try:
        found = await take_connect(auth.db, _hash(state)) if state else None
        if found is None or found.origin_id != origin_id:
            raise BadRequest("this connection attempt is unknown, already used or expired: start again")
        browser = read_cookie(request, cookie_name, auth.issuer)
        if not browser or not secrets.compare_digest(_hash(browser), found.browser_hash):
            raise Forbidden("this answer belongs to a connection started in another browser: start again")
        note(request.scope, principal=found.user_id, tenant=found.tenant_id)  # whose connection, in the trail
        name, config = _oauth_origin(auth, origin_id)
        code = downstream.callback_code(config.server, params, state)
        keys = auth.db.vault
        if keys is None:
            raise BadRequest("the vault has no master key: per-user connections cannot be stored")
        try:
            verifier = keys.open(found.sealed_verifier, connect_owner(_hash(state), config.server.issuer)).decode()
        except VaultError:
            raise BadRequest(
                "the origin was reconfigured, or the vault refused, during this attempt: start again"
            ) from None
        tokens = await downstream.exchange_code(
            config.server,
            config.client,
            code=code,
            code_verifier=verifier,
            redirect_uri=_callback(auth, origin_id),
            egress=auth.egress,
            ssl=auth.ssl_context,
            scope=config.scope,
        )
        key = GrantKey(found.tenant_id, found.user_id, origin_id, config.server.issuer, config.server.resource)
        try:
            sealed = seal_tokens(keys, key.owner, tokens)
        except VaultError as error:
            raise Unavailable(f"the vault could not seal your connection ({error}): start again") from None
        await save_grant(
            auth.db,
            key,
            sealed=sealed,
            expires_at=tokens.expires_at,
            scope=tokens.scope or "",
        )
    except BastionError as error:
        response = error_page(error)
    else:
        if auth.downstream is not None:
            auth.downstream.forget(found.user_id)
        await auth.bus.publish(ChangeEvent("users", found.user_id))  # other replicas drop their copies
        log.info("downstream_connected", origin_id=origin_id, user_id=found.user_id)
        response = render("connected.html", connected=True, origin_name=name)
    delete_cookie(response, cookie_name, auth.issuer, samesite="lax")
    return response


# --- the person's connections: list, disconnect ----------------------------------------------------


def _member_tenant(auth: AuthServer, user_id: str) -> str:
    member = auth.holder.current.members.get(user_id)
    if member is None:
        raise Unauthenticated("this account no longer exists")
    return member.tenant_id


@router.get("/auth/connections")
async def connections(request: Request, auth: Auth) -> JSONResponse:
    """The signed-in person's connected origins: status, scopes, expiry, approved clients (never a token)."""
    views = await connections_of(auth, (await session_claims(request, auth))["sub"])
    return JSONResponse(
        [{**asdict(view), "updated_at": view.updated_at.isoformat()} for view in views],
        headers={"cache-control": "no-store"},
    )


@router.delete("/auth/connections/{origin_id}")
async def disconnect(origin_id: str, request: Request, auth: Auth) -> Response:
    """Withdraw the connection: the tokens are deleted here (and revoked at the origin's server where
    it offers RFC 7009), and no call uses them again, on any replica."""
    session = await session_claims(request, auth)
    user_id = session["sub"]
    if not same_secret(request.headers.get("x-csrf-token", ""), session_csrf(session)):
        raise Forbidden("the X-CSRF-Token header is missing or wrong")
    await disconnect_origin(auth, user_id, origin_id)
    return Response(status_code=204)


async def connections_of(auth: AuthServer, user_id: str) -> list[ConnectionView]:
    """A person's connected origins (for /auth/connections and the console's account page)."""
    return await list_connections(auth.db, _member_tenant(auth, user_id), user_id)


async def disconnect_origin(auth: AuthServer, user_id: str, origin_id: str) -> None:
    """Withdraw a person's connection to an origin (NotFound when there is none): its grants and
    client approvals are deleted, every replica forgets them, the tokens are revoked upstream."""
    removed = await delete_connection(auth.db, _member_tenant(auth, user_id), user_id, origin_id)
    if not removed:
        raise NotFound(f"you have no connection to origin {origin_id!r}")
    if auth.downstream is not None:
        auth.downstream.forget(user_id)
    await auth.bus.publish(ChangeEvent("users", user_id))
    await _revoke(auth, origin_id, removed)
    log.info("downstream_disconnected", origin_id=origin_id, user_id=user_id)


async def _revoke(auth: AuthServer, origin_id: str, removed: list[tuple[GrantKey, str]]) -> None:
    """Best effort: the grant is gone here whatever the origin's server answers."""
    keys = auth.db.vault
    try:
        _name, config = _oauth_origin(auth, origin_id)
    except BastionError:
        return
    if keys is None or config.server.revocation_endpoint is None:
        return
    for key, sealed in removed:
        if key.issuer != config.server.issuer:
            continue  # the origin moved to another server since: its old tokens are not sent to the new one
        try:
            tokens = open_tokens(keys, key.owner, sealed)
            await downstream.revoke(
                config.server,
                config.client,
                tokens.refresh_token or tokens.access_token,
                egress=auth.egress,
                ssl=auth.ssl_context,
            )
        except (BastionError, VaultError) as exc:
            log.info("downstream_revoke_failed", origin_id=origin_id, error=type(exc).__name__)
