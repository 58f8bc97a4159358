"""The token endpoint (RFC 6749 §3.2, §5): client authentication, then one handler per grant type.

Access tokens are opaque, random and short-lived; refresh tokens rotate on every
use (OAuth 2.1 §4.3.1), and a replayed one revokes its whole family (OAuth 2.0
Security BCP, RFC 9700 §4.14.2). Both are stored as SHA-256 hashes only.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bastion.errors import BastionError, UnauthorizedClient, UnsupportedGrantType
from bastion.identity.tokens import ACCESS_TOKEN_PREFIX, TOKEN_PREFIX, hash_token
from bastion.oauth.client_auth import ClientAuthenticator
from bastion.oauth.provider import Client, Grant, OAuthStore

__all__ = ["GrantHandler", "TokenEndpoint", "TokenIssuer", "TokenResponse"]

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 — RFC 8693 §3 type name, not a secret


@dataclass(frozen=True, slots=True)
class TokenResponse:
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    issued_token_type: str | None = None  # RFC 8693 §2.2.1

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.issued_token_type is not None:
            body["issued_token_type"] = self.issued_token_type
        return body


class TokenIssuer:
    def __init__(self, store: OAuthStore, *, access_ttl: int, refresh_ttl: int) -> None:
        self._store = store
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    async def issue(
        self,
        grant: Grant,
        *,
        refresh: bool,
        now: float,
        access_scopes: tuple[str, ...] | None = None,
        taken: tuple[Literal["code", "refresh"], str] | None = None,
    ) -> TokenResponse:
        """An access token (with `access_scopes`, at most the grant's) and, if asked, a refresh
        token, stored together or not at all.

        RFC 6749 §6: a refresh token keeps the scope of the grant even when the
        access token issued beside it was narrowed. `taken`: the (kind, hash) of the code or
        refresh token spent at `now` for this, given back when the store fails to save these
        (`OAuthStore.give_back`): a client retrying after that error is not a replay.
        """
        access = ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)
        rows = [(hash_token(access), "access", now + self.access_ttl)]
        refresh_token = None
        if refresh:
            refresh_token = TOKEN_PREFIX + "rt_" + secrets.token_urlsafe(32)
            rows.append((hash_token(refresh_token), "refresh", now + self.refresh_ttl))
        try:
            await self._store.save_tokens(grant, rows, now, access_scopes=access_scopes)
        except BastionError:
            raise  # refused (the grant was revoked meanwhile): what was taken stays spent
        except Exception:
            if taken is not None:
                with contextlib.suppress(Exception):  # the store may be gone altogether: the first error says so
                    await self._store.give_back(*taken, now)
            raise
        return TokenResponse(
            access_token=access,
            expires_in=self.access_ttl,
            scope=" ".join(access_scopes if access_scopes is not None else grant.scopes),
            refresh_token=refresh_token,
        )


class GrantHandler(Protocol):
    async def __call__(self, form: Mapping[str, str], client: Client, now: float) -> TokenResponse: ...


class TokenEndpoint:
    def __init__(self, clients: ClientAuthenticator, handlers: Mapping[str, GrantHandler]) -> None:
        self._clients = clients
        self._handlers = dict(handlers)

    @property
    def grant_types(self) -> list[str]:
        return list(self._handlers)

    async def handle(self, form: Mapping[str, str], authorization: str | None, now: float) -> TokenResponse:
        client = await self._clients.authenticate(form, authorization)
        grant_type = form.get("grant_type", "")
        handler = self._handlers.get(grant_type)
        if handler is None:
            raise UnsupportedGrantType(
                f"grant_type {grant_type[:80]!r} is not supported; use one of {', '.join(self._handlers)}"
            )
        if grant_type not in client.grant_types:
            raise UnauthorizedClient(f"this client is not registered for the {grant_type} grant")
        return await handler(form, client, now)
