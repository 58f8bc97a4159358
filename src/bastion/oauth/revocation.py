"""RFC 7009 — OAuth 2.0 Token Revocation: a client withdraws an access or refresh token it holds.

The answer is the same 200 whether the token was revoked, unknown, already
dead or issued to another client (§2.2), so the endpoint tells a caller nothing
about tokens that are not its own. Revocation is immediate: the store bumps the
change epoch, and every replica's bearer cache forgets the token before its
next request.
"""

from __future__ import annotations

from collections.abc import Mapping

from bastion.errors import BadRequest
from bastion.identity.tokens import hash_token
from bastion.oauth.client_auth import ClientAuthenticator
from bastion.oauth.provider import OAuthStore

__all__ = ["TOKEN_TYPE_HINTS", "Revoker"]

# RFC 7009 §2.1 / §4.1.2: the two hints defined for the token_type_hint registry.
TOKEN_TYPE_HINTS = ("access_token", "refresh_token")


class Revoker:
    def __init__(self, clients: ClientAuthenticator, store: OAuthStore) -> None:
        self._clients = clients
        self._store = store

    async def revoke(self, form: Mapping[str, str], authorization: str | None) -> None:
        # RFC 7009 §2.1: the client authenticates as at the token endpoint (public clients by
        # client_id alone, confidential ones with their secret); a failure is 401 invalid_client.
        client = await self._clients.authenticate(form, authorization)
        token = form.get("token")
        if not token:
            raise BadRequest("token is required: the access or refresh token to revoke (RFC 7009 §2.1)")
        # RFC 7009 §2.1: token_type_hint only speeds up the lookup, and an unknown value is
        # ignored. One lookup by hash finds either kind, so the hint is not needed at all.
        record = await self._store.find_token(hash_token(token))
        if record is None or record.grant.client_id != client.client_id:
            # RFC 7009 §2.1: the server checks the token was issued to this client; a token of
            # another client stays live. §2.2: the answer is 200 all the same, as for an unknown one.
            return
        # RFC 7009 §2.1: revoking a refresh token revokes the access tokens of the same grant
        # (the store revokes its family); revoking an access token leaves the refresh token.
        await self._store.revoke_token(record.token_hash)
