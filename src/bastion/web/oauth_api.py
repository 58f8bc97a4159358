"""The JSON endpoints of the authorization server: metadata, token, revocation, introspection, registration, JWKS.

Errors here are rendered as RFC 6749 §5.2 bodies (`error`, `error_description`),
never as the admin API's error envelope, because OAuth clients parse these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from bastion.audit.sink import note
from bastion.errors import AccountLocked, BadRequest, BastionError, InvalidClient, TooManyRequests, Unavailable
from bastion.oauth.assertion import ID_JAG_PROFILE
from bastion.oauth.metadata import authorization_server_metadata, protected_resource_metadata
from bastion.web.deps import Auth, limit, single_values

__all__ = ["oauth_error", "router"]

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

_NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}  # RFC 6749 §5.1


def oauth_error(error: BastionError) -> JSONResponse:
    headers = dict(_NO_STORE)
    if isinstance(error, InvalidClient):
        headers["www-authenticate"] = 'Basic realm="bastion"'  # RFC 6749 §5.2 (401 invalid_client)
    if isinstance(error, TooManyRequests | AccountLocked | Unavailable):
        headers["retry-after"] = str(error.retry_after)
    body = {"error": error.oauth_error, "error_description": error.message}
    return JSONResponse(body, status_code=error.http_status, headers=headers)


async def _form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise BadRequest("send the parameters as application/x-www-form-urlencoded (RFC 6749 §3.2)")
    return single_values((await request.form()).multi_items())


async def _guarded(
    work: Callable[[], Awaitable[Response]], request: Request, route: str, *, current: bool = True
) -> Response:
    """Rate-limit per client address, then run `work`, rendering any refusal as RFC 6749 §5.2.

    `work` decides from a snapshot no older than the shared epoch (which servers exist and are
    published, who may reach them): a change committed on another replica binds the next request
    here, as on the MCP endpoint, not only once its event arrives (Unavailable, 503, when the epoch
    cannot be read). `current=False` for revocation, which reads no snapshot and only takes power
    away: an outage of the shared epoch must not keep a token alive."""
    try:
        await limit(request, route)
        if current:
            await request.app.state.auth.holder.checked()
        return await work()
    except BastionError as error:
        note(request.scope, reason=error.message)
        return oauth_error(error)
    except Exception as exc:  # a failure nobody foresaw (the store, a bug): still an answer clients parse
        # Its type only: a driver's message may carry the request's values (a token, a secret).
        log.error("oauth_endpoint_failed", route=route, error=type(exc).__name__)
        note(request.scope, reason=f"the authorization server failed: {type(exc).__name__}")
        body = {"error": "server_error", "error_description": "the authorization server failed to answer; try again"}
        return JSONResponse(body, status_code=500, headers=_NO_STORE)


@router.get("/.well-known/oauth-authorization-server")
@router.get("/.well-known/openid-configuration")
async def as_metadata(auth: Auth) -> JSONResponse:
    document = authorization_server_metadata(
        auth.issuer,
        grant_types=auth.token_endpoint.grant_types,
        registration=auth.registrar.enabled,
        client_documents=auth.clients.accepts_documents,
        grant_profiles=(ID_JAG_PROFILE,) if auth.id_jag.trusted_issuers else (),
    )
    return JSONResponse(document, headers={"cache-control": "max-age=300"})


@router.get("/.well-known/oauth-protected-resource/servers/{slug}/mcp")
async def resource_metadata(slug: str, auth: Auth) -> JSONResponse:
    server = auth.holder.current.servers.get(slug)
    if server is None or not server.published:
        # The same answer for unknown and unpublished servers: no hint that a draft exists.
        return JSONResponse({"error": {"code": "not_found", "message": "no such resource"}}, status_code=404)
    return JSONResponse(protected_resource_metadata(auth.issuer, server), headers={"cache-control": "max-age=60"})


@router.get("/oauth/jwks.json")
async def jwks(auth: Auth) -> JSONResponse:
    return JSONResponse(auth.keyring.jwks(), headers={"cache-control": "max-age=300"})


@router.post("/oauth/token")
async def token(request: Request, auth: Auth) -> Response:
    async def work() -> Response:
        form = await _form(request)
        note(request.scope, target=form.get("grant_type", "")[:64], client=form.get("client_id", "")[:255])
        issued = await auth.token_endpoint.handle(form, request.headers.get("authorization"), auth.now())
        return JSONResponse(issued.to_json(), headers=_NO_STORE)

    return await _guarded(work, request, "token")


@router.post("/oauth/revoke")
async def revoke(request: Request, auth: Auth) -> Response:
    async def work() -> Response:
        await auth.revoker.revoke(await _form(request), request.headers.get("authorization"))
        return Response(status_code=200)  # RFC 7009 §2.2: the content is ignored by the client

    return await _guarded(work, request, "token", current=False)


@router.post("/oauth/introspect")
async def introspect(request: Request, auth: Auth) -> Response:
    async def work() -> Response:
        form = await _form(request)
        answer = await auth.introspector.introspect(form, request.headers.get("authorization"), auth.now())
        return JSONResponse(answer, headers=_NO_STORE)  # RFC 7662 §2.2 answers hold token data

    return await _guarded(work, request, "token")


@router.post("/oauth/register")
async def register(request: Request, auth: Auth) -> Response:
    async def work() -> Response:
        try:
            body: Any = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise BadRequest("the registration request must be a JSON object (RFC 7591 §3.1)") from None
        return JSONResponse(await auth.registrar.register(body), status_code=201, headers=_NO_STORE)

    return await _guarded(work, request, "registration")
