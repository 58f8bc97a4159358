"""RFC 7662 — OAuth 2.0 Token Introspection, for service clients that hold a secret.

Only a confidential service client may ask (§2.1, §4: the endpoint must not
become a token-scanning oracle), and it learns only about tokens that concern
it: those for a virtual server it may reach, or those issued to it. Any other
token, like an unknown, expired or revoked one, is simply `{"active": false}`
(§2.2), so the answer never says which tokens exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bastion.catalog.snapshot import ServerView, Snapshot
from bastion.errors import BadRequest, InvalidClient
from bastion.identity.tokens import hash_token
from bastion.oauth.client_auth import ClientAuthenticator
from bastion.oauth.provider import Client, OAuthStore, TokenRecord
from bastion.oauth.resources import resource_url

__all__ = ["INACTIVE", "Introspector"]

INACTIVE: dict[str, Any] = {"active": False}  # RFC 7662 §2.2: nothing else is said about such a token


class Introspector:
    def __init__(
        self, clients: ClientAuthenticator, store: OAuthStore, snapshot: Callable[[], Snapshot], issuer: str
    ) -> None:
        self._clients = clients
        self._store = store
        self._snapshot = snapshot
        self._issuer = issuer

    async def introspect(self, form: Mapping[str, str], authorization: str | None, now: float) -> dict[str, Any]:
        caller = await self._clients.authenticate(form, authorization)
        if caller.kind != "service" or caller.secret_hash is None:
            # RFC 7662 §2.1 / §4: the caller must be authorized to introspect; here that means a
            # service client an administrator created, authenticated with its secret.
            raise InvalidClient("only service clients authenticated with a client secret may introspect tokens")
        token = form.get("token")
        if not token:
            raise BadRequest("token is required: the token to introspect (RFC 7662 §2.1)")
        # RFC 7662 §2.1: token_type_hint is optional and, as at revocation, not needed: one
        # lookup by hash finds either kind of token.
        record = await self._store.find_token(hash_token(token))
        if record is None or not _live(record, now) or not _concerns(caller, record):
            return dict(INACTIVE)
        server = _server_by_id(self._snapshot(), record.grant.server_id)
        user = await self._store.get_user(record.grant.user_id)
        if server is None or not server.published or user is None:  # it opens nothing at the moment
            return dict(INACTIVE)
        # RFC 7662 §2.2: the top-level members; times are NumericDate seconds (RFC 7519 §2).
        answer: dict[str, Any] = {
            "active": True,
            "scope": " ".join(record.grant.scopes),
            "client_id": record.grant.client_id,
            "username": user.username,
            "sub": user.id,
            "org_id": user.tenant_id,  # the tenant: which organization's policies the token acts under
            "aud": resource_url(self._issuer, server.slug),  # RFC 8707: the one resource it is for
            "iss": self._issuer,
            "exp": int(record.expires_at),
            "iat": int(record.issued_at),
        }
        if record.kind == "access":
            # RFC 7662 §2.2 / RFC 6749 §7.1; refresh tokens have none.
            answer["token_type"] = "Bearer"  # noqa: S105 — a token type's name, not a secret
        return answer


def _live(record: TokenRecord, now: float) -> bool:
    # A rotated refresh token is spent (OAuth 2.1 §4.3.1): presenting it again would revoke its family.
    return not record.revoked and record.expires_at > now and not (record.kind == "refresh" and record.used)


def _concerns(caller: Client, record: TokenRecord) -> bool:
    """RFC 7662 §4: a caller learns about tokens for its own servers, or issued to itself."""
    return record.grant.server_id in caller.server_ids or record.grant.client_id == caller.client_id


def _server_by_id(snapshot: Snapshot, server_id: str) -> ServerView | None:
    return next((server for server in snapshot.servers.values() if server.id == server_id), None)
