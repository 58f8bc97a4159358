"""The refresh_token grant (RFC 6749 §6) with rotation and reuse detection (OAuth 2.1 §4.3.1)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bastion.catalog.snapshot import Snapshot
from bastion.errors import InvalidGrant
from bastion.identity.tokens import hash_token
from bastion.oauth.provider import Client, OAuthStore
from bastion.oauth.resources import check_same_resource
from bastion.oauth.scopes import narrowed
from bastion.oauth.token import TokenIssuer, TokenResponse

__all__ = ["RefreshTokenGrant"]


class RefreshTokenGrant:
    def __init__(self, store: OAuthStore, issuer: TokenIssuer, snapshot: Callable[[], Snapshot], url: str) -> None:
        self._store = store
        self._issuer = issuer
        self._snapshot = snapshot
        self._url = url

    async def __call__(self, form: Mapping[str, str], client: Client, now: float) -> TokenResponse:
        token = form.get("refresh_token")
        if not token:
            raise InvalidGrant("refresh_token is required")
        record = await self._store.take_refresh(hash_token(token), now, client.client_id)
        if record is None:  # unknown, or another client's (left as it was)
            raise InvalidGrant("the refresh token is invalid")
        if record.revoked:
            raise InvalidGrant("the refresh token was revoked")
        if record.used:
            # RFC 9700 §4.14.2: a rotated refresh token presented again means two parties
            # hold it; revoke the family so neither keeps access.
            await self._store.revoke_family(record.grant.family_id)
            raise InvalidGrant("the refresh token was already used; every token of this grant is now revoked")
        if record.expires_at <= now:
            raise InvalidGrant("the refresh token has expired")
        check_same_resource(self._snapshot(), self._url, form.get("resource"), record.grant.server_id)
        scopes = narrowed(form.get("scope"), record.grant.scopes)
        spent = record.token_hash
        return await self._issuer.issue(
            record.grant, refresh=True, now=now, access_scopes=scopes, taken=("refresh", spent)
        )
