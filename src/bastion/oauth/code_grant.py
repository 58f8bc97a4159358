"""The authorization_code grant (OAuth 2.1 §4.1.3, RFC 6749 §4.1.3) with PKCE (RFC 7636 §4.6)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bastion.catalog.snapshot import Snapshot
from bastion.errors import InvalidGrant
from bastion.identity.tokens import hash_token
from bastion.oauth import pkce
from bastion.oauth.provider import Client, OAuthStore
from bastion.oauth.resources import check_same_resource
from bastion.oauth.token import TokenIssuer, TokenResponse

__all__ = ["AuthorizationCodeGrant"]


class AuthorizationCodeGrant:
    def __init__(self, store: OAuthStore, issuer: TokenIssuer, snapshot: Callable[[], Snapshot], url: str) -> None:
        self._store = store
        self._issuer = issuer
        self._snapshot = snapshot
        self._url = url

    async def __call__(self, form: Mapping[str, str], client: Client, now: float) -> TokenResponse:
        code = form.get("code")
        if not code:
            raise InvalidGrant("code is required")
        record = await self._store.take_code(hash_token(code), now, client.client_id)
        if record is None:
            # §4.1.3: a code issued to another client is as unknown as a made-up one.
            raise InvalidGrant("the authorization code is invalid")
        if record.used:
            # OAuth 2.1 §4.1.3 / RFC 6749 §10.5: a replayed code may mean it leaked;
            # revoke everything it issued.
            await self._store.revoke_family(record.grant.family_id)
            raise InvalidGrant("the authorization code was already used; the tokens it issued are revoked")
        if record.expires_at <= now:
            raise InvalidGrant("the authorization code has expired")
        if form.get("redirect_uri") != record.redirect_uri:
            raise InvalidGrant("redirect_uri differs from the one in the authorization request")
        pkce.verify(form.get("code_verifier"), record.code_challenge)
        check_same_resource(self._snapshot(), self._url, form.get("resource"), record.grant.server_id)
        refresh = "refresh_token" in client.grant_types
        return await self._issuer.issue(record.grant, refresh=refresh, now=now, taken=("code", record.code_hash))
