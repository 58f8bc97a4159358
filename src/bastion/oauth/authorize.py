"""The authorization endpoint (OAuth 2.1 §4.1.1, RFC 6749 §4.1): validate, then issue a code.

Errors about the client or its redirect URI are shown to the user and never
redirected (RFC 6749 §4.1.2.1: an unchecked redirect URI would make Bastion an
open redirector); every later error goes back to the client's redirect URI
with `state` and `iss` (RFC 9207 §2), through a link on the error page rather
than at once: the clients that reach this endpoint are ones anyone could
register (dynamic registration, a metadata document; service clients have no
redirect URI), so the URI is the registrant's choice, and an automatic
redirect would make any link to this endpoint forward its visitor wherever a
registrant likes (RFC 9700 §4.11.2).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from bastion.catalog.snapshot import Snapshot
from bastion.errors import BadRequest, BastionError, UnauthorizedClient
from bastion.identity.tokens import hash_token
from bastion.oauth import pkce
from bastion.oauth.clients import ClientDirectory
from bastion.oauth.provider import CodeRecord, Grant, OAuthStore
from bastion.oauth.redirects import redirect_uri_matches, with_params
from bastion.oauth.resources import server_for_resource
from bastion.oauth.scopes import for_client

__all__ = ["MAX_NONCE", "AuthorizationRequest", "Authorizer", "RedirectableError"]

MAX_NONCE = 255  # the width of the codes table's nonce column


class RedirectableError(Exception):
    """An error the client learns about through its (already validated) redirect URI."""

    def __init__(self, error: BastionError, redirect_uri: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.redirect_uri = redirect_uri


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated request, carried through login and consent inside a signed token."""

    client_id: str
    client_name: str
    client_kind: str
    redirect_uri: str
    state: str | None
    code_challenge: str
    scopes: tuple[str, ...]
    server_id: str
    server_slug: str
    server_title: str
    nonce: str | None = None

    @property
    def redirect_host(self) -> str:
        parts = urlsplit(self.redirect_uri)
        return parts.netloc or f"{parts.scheme}:"  # a native app's private-use scheme has no host to show

    def to_claims(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> AuthorizationRequest:
        fields: dict[str, Any] = {name: claims.get(name) for name in cls.__dataclass_fields__}
        fields["scopes"] = tuple(fields["scopes"] or ())
        return cls(**fields)


class Authorizer:
    def __init__(
        self,
        *,
        store: OAuthStore,
        clients: ClientDirectory,
        snapshot: Callable[[], Snapshot],
        issuer: str,
        code_ttl_seconds: float,
    ) -> None:
        self._store = store
        self._clients = clients
        self._snapshot = snapshot
        self.issuer = issuer
        self._code_ttl = code_ttl_seconds

    async def validate(self, params: Mapping[str, str]) -> AuthorizationRequest:
        client = await self._clients.get(params.get("client_id"))
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            raise BadRequest("redirect_uri is required")
        if not redirect_uri_matches(redirect_uri, client.redirect_uris):
            raise BadRequest("redirect_uri does not match any redirect URI registered for this client")
        state = params.get("state")
        try:
            if params.get("response_type") != "code":
                raise _UnsupportedResponseType("response_type must be 'code' (OAuth 2.1 §4.1.1)")
            if "authorization_code" not in client.grant_types:
                raise UnauthorizedClient("this client is not registered for the authorization_code grant")
            challenge = pkce.check_challenge(params.get("code_challenge"), params.get("code_challenge_method"))
            nonce = params.get("nonce")
            if nonce is not None and not 0 < len(nonce) <= MAX_NONCE:  # it is stored with the code
                raise BadRequest(f"nonce must be 1 to {MAX_NONCE} characters")
            server = server_for_resource(self._snapshot(), self.issuer, params.get("resource"))
            scopes = for_client(params.get("scope"), client.scope)
        except BastionError as error:
            raise RedirectableError(error, self.error_redirect(redirect_uri, error, state)) from None
        return AuthorizationRequest(
            client_id=client.client_id,
            client_name=client.client_name,
            client_kind=client.kind,
            redirect_uri=redirect_uri,
            state=state,
            code_challenge=challenge,
            scopes=scopes,
            server_id=server.id,
            server_slug=server.slug,
            server_title=server.title or server.slug,
            nonce=nonce,
        )

    async def approve(self, request: AuthorizationRequest, user_id: str, now: float) -> str:
        """Issue a single-use code and the redirect that delivers it (RFC 6749 §4.1.2, RFC 9207 §2)."""
        code = secrets.token_urlsafe(32)
        grant = Grant(
            family_id=secrets.token_hex(16),
            client_id=request.client_id,
            user_id=user_id,
            server_id=request.server_id,
            scopes=request.scopes,
        )
        await self._store.save_code(
            CodeRecord(
                code_hash=hash_token(code),
                grant=grant,
                redirect_uri=request.redirect_uri,
                code_challenge=request.code_challenge,
                expires_at=now + self._code_ttl,
                nonce=request.nonce,
            )
        )
        return with_params(request.redirect_uri, {"code": code, "state": request.state, "iss": self.issuer})

    def deny(self, request: AuthorizationRequest) -> str:
        error = _AccessDenied("the user denied the request")
        return self.error_redirect(request.redirect_uri, error, request.state)

    def error_redirect(self, redirect_uri: str, error: BastionError, state: str | None) -> str:
        params = {"error": error.oauth_error, "error_description": error.message, "state": state, "iss": self.issuer}
        return with_params(redirect_uri, params)


class _UnsupportedResponseType(BadRequest):
    oauth_error = "unsupported_response_type"


class _AccessDenied(BadRequest):
    oauth_error = "access_denied"
