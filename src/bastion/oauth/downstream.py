"""Bastion as an OAuth 2.1 client of an origin's authorization server (per-user downstream OAuth).

The protocol pieces only, with no storage: where to connect a person to, and what comes back.

* Discovery (RFC 9728, RFC 8414) lives in `bastion.oauth.downstream_metadata`, re-exported here.
* RFC 7591 dynamic client registration, as a public client (`token_endpoint_auth_method: none`).
* The authorization code grant (RFC 6749 §4.1, OAuth 2.1) with RFC 7636 PKCE S256, the RFC 8707
  `resource` parameter in authorization and token requests, and RFC 9207 `iss` on the callback.
* Token responses (RFC 6749 §5.1) and errors (§5.2); refresh (§6) with rotation; a refresh the
  server answers `invalid_grant` is `DownstreamGrantLost`: the person has to connect again.

Why hand-written: authlib is not a dependency, and httpx-based OAuth clients would open their
own connections, past `bastion.net.egress`. Every request here goes through the egress policy's
aiohttp session (no redirects followed, size and time limits), as the other fetchers do; this
module is only the glue between those fetches and the RFCs above.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio
import orjson

from bastion.errors import BadRequest, UpstreamError, UpstreamProtocolError, UpstreamTimeout, UpstreamUnavailable
from bastion.net.egress import EgressPolicy, egress_session, read_limited
from bastion.oauth.downstream_metadata import (
    DownstreamServer,
    discover,
    parse_authorization_server_metadata,
    parse_resource_metadata,
    string_list,
)
from bastion.oauth.federation import json_object
from bastion.oauth.pkce import check_challenge
from bastion.oauth.redirects import with_params

__all__ = [
    "DownstreamClient",
    "DownstreamGrantLost",
    "DownstreamServer",
    "DownstreamTokenError",
    "DownstreamTokens",
    "RegistrationNotOffered",
    "authorization_url",
    "callback_code",
    "client_credentials",
    "code_challenge",
    "discover",
    "exchange_code",
    "exchange_token",
    "new_code_verifier",
    "parse_authorization_server_metadata",
    "parse_resource_metadata",
    "refresh",
    "register",
    "revoke",
]

_MAX_BYTES = 256 * 1024  # metadata, registration and token replies are a few kilobytes
_TIMEOUT_SECONDS = 10.0


class DownstreamTokenError(UpstreamError):
    """The origin's token endpoint refused a request; `error` is its RFC 6749 §5.2 code (or "http_NNN")."""

    def __init__(self, message: str, *, error: str) -> None:
        super().__init__(message)
        self.error = error


class DownstreamGrantLost(DownstreamTokenError):
    """A refresh answered `invalid_grant`: the grant is gone (revoked, expired, reused); connect again."""


class RegistrationNotOffered(UpstreamError):
    """The authorization server has no RFC 7591 registration endpoint: a client_id must be configured."""


@dataclass(frozen=True)
class DownstreamClient:
    """Bastion's registration at one authorization server (dynamic, or configured by hand)."""

    client_id: str
    redirect_uris: tuple[str, ...] = ()
    client_secret: str | None = field(default=None, repr=False)  # only when the server insisted on one
    token_endpoint_auth_method: str = "none"  # noqa: S105 - an auth method's name, not a password


@dataclass(frozen=True)
class DownstreamTokens:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float | None  # POSIX seconds, from `expires_in`; None when the server did not say
    scope: str | None
    issued_at: float | None = None  # when Bastion received them: with expires_at, their lifetime


# --- small pieces ------------------------------------------------------------------------------


def new_code_verifier() -> str:
    """RFC 7636 §4.1: 256 bits of randomness, 43 unreserved characters."""
    return secrets.token_urlsafe(32)


def code_challenge(verifier: str) -> str:
    """RFC 7636 §4.2: the S256 challenge of `verifier` (what `bastion.oauth.pkce.verify` checks against)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")


def _error_code(answer: Mapping[str, Any], status: int) -> str:
    # RFC 6749 §5.2: `error` is ASCII without spaces or quotes; anything else is not quoted back.
    # error_description is the server's prose and may carry anything: never echoed.
    error = answer.get("error")
    return error if isinstance(error, str) and error.replace("_", "a").isalnum() else f"http_{status}"


# --- POSTs: registration and the token endpoint ------------------------------------------------


async def _post(
    policy: EgressPolicy,
    url: str,
    *,
    form: Mapping[str, str] | None = None,
    json: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    ssl: SSLContext | None,
    timeout_seconds: float,
) -> tuple[int, bytes]:
    """POST under the egress policy: no redirect followed, at most _MAX_BYTES read, one deadline.

    `fetch_limited` only GETs; this is the same pattern as `bastion.oauth.federation` uses.
    """
    request_headers = {"Accept": "application/json", "Accept-Encoding": "identity", **(headers or {})}
    body: dict[str, Any] = {"data": dict(form)} if form is not None else {"data": orjson.dumps(json)}
    if json is not None:
        request_headers["Content-Type"] = "application/json"
    try:
        with anyio.fail_after(timeout_seconds):
            async with (
                egress_session(policy, timeout=aiohttp.ClientTimeout(total=timeout_seconds)) as session,
                session.post(
                    url, headers=request_headers, ssl=ssl if ssl is not None else True, allow_redirects=False, **body
                ) as response,
            ):
                return response.status, await read_limited(response, _MAX_BYTES)
    except TimeoutError as error:
        raise UpstreamTimeout(f"{url} did not answer within {timeout_seconds:g} seconds") from error
    except aiohttp.ClientError as error:  # the cause stays in the chain; the message names no secret
        raise UpstreamUnavailable(f"could not reach {url}: {type(error).__name__}") from error


async def register(
    server: DownstreamServer,
    redirect_uri: str,
    client_name: str,
    *,
    egress: EgressPolicy,
    scope: str | None = None,
    ssl: SSLContext | None = None,
    timeout_seconds: float = _TIMEOUT_SECONDS,
) -> DownstreamClient:
    """RFC 7591 §3: register Bastion as a public client that uses codes and refresh tokens."""
    if server.registration_endpoint is None:
        raise RegistrationNotOffered(
            f"{server.issuer} offers no dynamic client registration (RFC 7591): "
            "register Bastion there by hand and configure the client_id it gives"
        )
    request: dict[str, Any] = {
        "client_name": client_name,
        "redirect_uris": [redirect_uri],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    }
    if scope:
        request["scope"] = scope
    status, body = await _post(
        egress, server.registration_endpoint, json=request, ssl=ssl, timeout_seconds=timeout_seconds
    )
    answer = json_object(body, f"{server.issuer}'s registration response")
    if status not in (200, 201):  # RFC 7591 §3.2.1 says 201; some servers answer 200
        raise UpstreamProtocolError(
            f"{server.issuer} refused to register Bastion ({_error_code(answer, status)}; RFC 7591 §3.2.2)"
        )
    client_id = answer.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise UpstreamProtocolError(f"{server.issuer}'s registration response has no client_id (RFC 7591 §3.2.1)")
    redirect_uris = string_list(answer.get("redirect_uris")) or (redirect_uri,)
    if redirect_uri not in redirect_uris:  # RFC 7591 §3.2.1: the server may replace values; not this one
        raise UpstreamProtocolError(f"{server.issuer} registered Bastion with other redirect URIs")
    method = answer.get("token_endpoint_auth_method", "none")
    secret = answer.get("client_secret")
    return DownstreamClient(
        client_id=client_id,
        redirect_uris=redirect_uris,
        client_secret=secret if isinstance(secret, str) and secret else None,
        token_endpoint_auth_method=method if isinstance(method, str) else "none",
    )


# --- the authorization request and its answer ---------------------------------------------------


def authorization_url(
    server: DownstreamServer,
    client: DownstreamClient,
    redirect_uri: str,
    state: str,
    code_challenge: str,
    resource: str | None = None,
    scope: str | None = None,
) -> str:
    """OAuth 2.1 §4.1.1: where to send the person's browser; PKCE S256 and RFC 8707 `resource` always."""
    if not state:
        raise BadRequest("state is required: it binds the answer to the browser that asked (RFC 6749 §10.12)")
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": check_challenge(code_challenge, "S256"),
        "code_challenge_method": "S256",
        "resource": resource or server.resource,
        "scope": scope,
    }
    return with_params(server.authorization_endpoint, params)


def callback_code(server: DownstreamServer, params: Mapping[str, str], expected_state: str) -> str:
    """The code from the redirect back to Bastion, once state (RFC 6749 §10.12) and iss (RFC 9207) match."""
    state = params.get("state") or ""
    if not expected_state or not secrets.compare_digest(state.encode(), expected_state.encode()):
        raise BadRequest("the authorization answer's state does not match this connection attempt: start again")
    iss = params.get("iss")
    if (iss is not None or server.iss_parameter_supported) and iss != server.issuer:  # RFC 9207 §2.4: mix-up
        raise BadRequest(f"the authorization answer did not come from {server.issuer} (RFC 9207 §2.4)")
    if "error" in params:  # RFC 6749 §4.1.2.1; the code alone is quoted, never the description
        raise DownstreamTokenError(
            f"{server.issuer} did not authorize the connection ({_error_code(params, 400)})",
            error=_error_code(params, 400),
        )
    code = params.get("code")
    if not code:
        raise BadRequest("the authorization answer carries no code")
    return code


# --- the token endpoint -------------------------------------------------------------------------


def _client_auth(client: DownstreamClient, form: dict[str, str], headers: dict[str, str]) -> None:
    """RFC 6749 §2.3: a public client names itself; a confidential one sends its secret."""
    if client.client_secret is None or client.token_endpoint_auth_method == "none":  # noqa: S105
        form["client_id"] = client.client_id
    elif client.token_endpoint_auth_method == "client_secret_post":  # noqa: S105
        form |= {"client_id": client.client_id, "client_secret": client.client_secret}
    else:  # client_secret_basic, RFC 7591's default: form-encode each part, then Basic (RFC 6749 §2.3.1)
        pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")


async def _token_request(
    server: DownstreamServer,
    client: DownstreamClient,
    form: dict[str, str],
    *,
    egress: EgressPolicy,
    ssl: SSLContext | None,
    timeout_seconds: float,
    now: float | None,
    lost: type[DownstreamTokenError],
    previous_refresh: str | None = None,
    requested_scope: str | None = None,
) -> DownstreamTokens:
    headers: dict[str, str] = {}
    _client_auth(client, form, headers)
    status, body = await _post(
        egress, server.token_endpoint, form=form, headers=headers, ssl=ssl, timeout_seconds=timeout_seconds
    )
    grant = form["grant_type"]
    if status != 200:
        try:  # RFC 6749 §5.2 bodies are JSON; a proxy's HTML error page still counts as a refusal
            refusal = json_object(body, "")
        except UpstreamProtocolError:
            refusal = {}
        error = _error_code(refusal, status)
        kind = lost if error == "invalid_grant" else DownstreamTokenError
        raise kind(f"{server.issuer} refused the {grant} grant ({error}; RFC 6749 §5.2)", error=error)
    answer = json_object(body, f"{server.issuer}'s token response")
    access = answer.get("access_token")
    token_type = answer.get("token_type")
    if not isinstance(access, str) or not access:
        raise UpstreamProtocolError(f"{server.issuer}'s token response has no access_token (RFC 6749 §5.1)")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":  # the only kind Bastion can present
        raise UpstreamProtocolError(f"{server.issuer} issued a token that is not a Bearer token (RFC 6750)")
    refresh_token = answer.get("refresh_token")
    expires_in = answer.get("expires_in")
    scope = answer.get("scope")
    issued_at = time.time() if now is None else now
    return DownstreamTokens(
        access_token=access,
        # RFC 6749 §6: a server that does not rotate answers without one; the old one stays valid.
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else previous_refresh,
        expires_at=issued_at + expires_in
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in >= 0
        else None,
        scope=scope if isinstance(scope, str) else requested_scope,  # RFC 6749 §5.1: omitted = as requested
        issued_at=issued_at,
    )


async def exchange_code(
    server: DownstreamServer,
    client: DownstreamClient,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    egress: EgressPolicy,
    resource: str | None = None,
    scope: str | None = None,
    ssl: SSLContext | None = None,
    timeout_seconds: float = _TIMEOUT_SECONDS,
    now: float | None = None,
) -> DownstreamTokens:
    """OAuth 2.1 §4.1.3 with the PKCE verifier (RFC 7636 §4.5) and the RFC 8707 resource."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
        "resource": resource or server.resource,
    }
    return await _token_request(
        server,
        client,
        form,
        egress=egress,
        ssl=ssl,
        timeout_seconds=timeout_seconds,
        now=now,
        lost=DownstreamTokenError,  # a refused code is one failed attempt, not a lost connection
        requested_scope=scope,
    )


async def refresh(
    server: DownstreamServer,
    client: DownstreamClient,
    refresh_token: str,
    *,
    egress: EgressPolicy,
    resource: str | None = None,
    scope: str | None = None,
    ssl: SSLContext | None = None,
    timeout_seconds: float = _TIMEOUT_SECONDS,
    now: float | None = None,
) -> DownstreamTokens:
    """RFC 6749 §6; `invalid_grant` raises DownstreamGrantLost (the person must connect again)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "resource": resource or server.resource}
    if scope:
        form["scope"] = scope
    return await _token_request(
        server,
        client,
        form,
        egress=egress,
        ssl=ssl,
        timeout_seconds=timeout_seconds,
        now=now,
        lost=DownstreamGrantLost,
        previous_refresh=refresh_token,
        requested_scope=scope,
    )


async def client_credentials(
    server: DownstreamServer,
    client: DownstreamClient,
    *,
    egress: EgressPolicy,
    resource: str | None = None,
    scope: str | None = None,
    ssl: SSLContext | None = None,
    timeout_seconds: float = _TIMEOUT_SECONDS,
    now: float | None = None,
) -> DownstreamTokens:
    """RFC 6749 §4.4 with the RFC 8707 resource: Bastion's own token at the origin, for no person."""
    form = {"grant_type": "client_credentials", "resource": resource or server.resource}
    if scope:
        form["scope"] = scope
    return await _token_request(
        server,
        client,
        form,
        egress=egress,
        ssl=ssl,
        timeout_seconds=timeout_seconds,
        now=now,
        lost=DownstreamTokenError,
        requested_scope=scope,
    )


async def revoke(
    server: DownstreamServer,
    client: DownstreamClient,
    token: str,
    *,
    egress: EgressPolicy,
    ssl: SSLContext | None = None,
    timeout_seconds: float = _TIMEOUT_SECONDS,
) -> None:
    """RFC 7009 §2.1: ask the server to revoke `token` (a refresh token revokes its grant's access
    tokens too, §2.1). Any answer but 200 is the server's refusal."""
    if server.revocation_endpoint is None:
        raise UpstreamProtocolError(f"{server.issuer} offers no token revocation (RFC 7009)")
    form: dict[str, str] = {"token": token}
    headers: dict[str, str] = {}
    _client_auth(client, form, headers)
    status, _body = await _post(
        egress, server.revocation_endpoint, form=form, headers=headers, ssl=ssl, timeout_seconds=timeout_seconds
    )
    if status != 200:
        raise DownstreamTokenError(
            f"{server.issuer} refused to revoke the token (HTTP {status})", error=f"http_{status}"
        )


async def exchange_token(
    server: DownstreamServer,
    client: DownstreamClient,
    subject_token: str,
    subject_token_type: str,
    *,
    egress: EgressPolicy,
    resource: str | None = None,
    scope: str | None = None,
    ssl: SSLContext | None = None,
    timeout_seconds: float = _TIMEOUT_SECONDS,
    now: float | None = None,
) -> DownstreamTokens:
    """RFC 8693 §2.1: trade `subject_token` (naming the person) for an access token at the origin."""
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": subject_token,
        "subject_token_type": subject_token_type,
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "resource": resource or server.resource,
    }
    if scope:
        form["scope"] = scope
    return await _token_request(
        server,
        client,
        form,
        egress=egress,
        ssl=ssl,
        timeout_seconds=timeout_seconds,
        now=now,
        lost=DownstreamTokenError,
        requested_scope=scope,
    )
