"""RFC 8693 — OAuth 2.0 Token Exchange: a service client trades a user's Bastion access token for another.

Delegation, kept simple (RFC 8693 §1.1): the authenticated service client is
the actor and the subject token's user the subject. The new token is issued to
the client (its `client_id`) for that user (its `sub`), for one resource and
at most the scopes both the subject token and the client hold (what an
administrator gave the client caps every token it gets, by any grant). There is
no `actor_token` and no `act` claim chain: the client authentication already
proves who acts, and Bastion's opaque tokens carry no `may_act` claim, so the
audience rule below stands in for it: the target is the subject token's own
server (the client holds a token for it already: the subject token) or one of
the servers an administrator allowed the client to reach.

The new token starts a family of its own (an MCP session bound to the user's
grant is not opened to the client), carries no refresh token, and never
outlives its subject token: it expires with it at the latest, and is revoked
with it (the token revoked, its grant withdrawn or revoked: the family names
its source).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping

from bastion.catalog.snapshot import Snapshot
from bastion.errors import BadRequest, InvalidScope, UnauthorizedClient
from bastion.identity.tokens import ACCESS_TOKEN_PREFIX, hash_token
from bastion.oauth.assertion import IdentityAssertionGrant
from bastion.oauth.client_credentials import held_scopes, scopes_within
from bastion.oauth.provider import Client, Grant, OAuthStore, TokenRecord
from bastion.oauth.resources import InvalidTarget, resource_url, server_for_resource
from bastion.oauth.scopes import narrowed
from bastion.oauth.token import ACCESS_TOKEN_TYPE, TokenResponse

__all__ = ["JWT_TOKEN_TYPE", "SUBJECT_JWT_TYPE", "TOKEN_EXCHANGE", "TokenExchangeGrant"]

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 — RFC 8693 §2.1 grant name
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 — RFC 8693 §3 type name
# RFC 8725 §3.11 explicit typing: a subject token is minted for token exchange and nothing else, so
# no access token a gateway sends its origins (`at+jwt`) can be replayed here as one.
SUBJECT_JWT_TYPE = "bastion-subject+jwt"
_SUBJECT_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti")


class TokenExchangeGrant:
    def __init__(
        self,
        store: OAuthStore,
        snapshot: Callable[[], Snapshot],
        url: str,
        *,
        access_ttl: int,
        jwt_subjects: IdentityAssertionGrant | None = None,
    ) -> None:
        self._store = store
        self._snapshot = snapshot
        self._url = url
        self._access_ttl = access_ttl
        # Verifies JWT subject tokens against the trusted issuers (the ID-JAG grant's list).
        self._jwt_subjects = jwt_subjects

    async def __call__(self, form: Mapping[str, str], client: Client, now: float) -> TokenResponse:
        if client.kind != "service" or client.secret_hash is None:
            raise UnauthorizedClient("token exchange is only for service clients with a client secret")
        if form.get("subject_token_type") == JWT_TOKEN_TYPE:
            return await self._from_jwt(form, client, now)
        subject, subject_hash = await self._subject(form, now)
        source = await self._store.get_client(subject.grant.client_id)
        if source is not None and source.permissions is not None and source.owner_user_id == subject.grant.user_id:
            # A service client set up by someone else acts as its owner within its creator's
            # permissions, a limit read from that client's row. The new token is this client's:
            # it would act as the owner without the limit.
            raise BadRequest(
                "the subject_token is limited to what its client's creator may do, a limit an exchanged "
                "token would not carry: it cannot be exchanged"
            )
        server_id = self._target(form, client, subject)
        # RFC 8693 §2.1 scope: what the new token is for, never more than the subject token holds,
        # nor than the client was given (the other grants cap by it too).
        wanted = narrowed(form.get("scope"), subject.grant.scopes)
        if not wanted:  # an empty request would read as "all the client holds" below
            raise InvalidScope("the subject token holds no scope to pass on")
        scopes = scopes_within(" ".join(wanted), held_scopes(client))
        grant = Grant(
            family_id=secrets.token_hex(16),
            client_id=client.client_id,
            user_id=subject.grant.user_id,
            server_id=server_id,
            scopes=scopes,
            source=subject_hash,
        )
        return await self._issue(grant, min(now + self._access_ttl, subject.expires_at), now)

    async def _from_jwt(self, form: Mapping[str, str], client: Client, now: float) -> TokenResponse:
        """RFC 8693 §3 `...:token-type:jwt`: a JWT another gateway or IdP this server trusts signed for
        it (`aud` this issuer, `typ` at+jwt), naming the person by email, preferred_username or sub.
        The target must be one of the client's servers; the scopes, within the client's and the JWT's."""
        if self._jwt_subjects is None or not self._jwt_subjects.trusted_issuers:
            raise BadRequest("this server trusts no issuer's JWTs as subject tokens (BASTION_ENTERPRISE_IDPS)")
        token = form.get("subject_token")
        if not token:
            raise BadRequest("subject_token is required (RFC 8693 §2.1)")
        _check_types(form)
        claims = await self._jwt_subjects.verified(
            token, now, typ=SUBJECT_JWT_TYPE, required=_SUBJECT_CLAIMS, what="subject_token"
        )
        await self._jwt_subjects.refuse_replay(claims, now)
        # The issuer names the person by email or preferred_username (its own user name: for
        # another Bastion, unique there); its `sub` is its own id, which means nothing here.
        user = await self._jwt_subjects.user_for(claims, ("email", "preferred_username"))
        target = form.get("resource") or form.get("audience")
        server = server_for_resource(self._snapshot(), self._url, target)
        if server.id not in client.server_ids:
            raise InvalidTarget(f"this client may not reach {resource_url(self._url, server.slug)}")
        grant = Grant(
            family_id=secrets.token_hex(16),
            client_id=client.client_id,
            user_id=user.id,
            server_id=server.id,
            scopes=self._jwt_subjects.scopes_for(claims, form, client),
        )
        return await self._issue(grant, min(now + self._access_ttl, float(claims["exp"])), now)

    async def _issue(self, grant: Grant, expires_at: float, now: float) -> TokenResponse:
        scopes = grant.scopes
        access = ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self._store.save_tokens(grant, [(hash_token(access), "access", expires_at)], now)
        return TokenResponse(
            access_token=access,
            expires_in=max(int(expires_at - now), 0),
            scope=" ".join(scopes),
            issued_token_type=ACCESS_TOKEN_TYPE,  # RFC 8693 §2.2.1: REQUIRED in the response
        )

    async def _subject(self, form: Mapping[str, str], now: float) -> tuple[TokenRecord, str]:
        # RFC 8693 §2.2.2: a missing, invalid or unacceptable subject or actor token is invalid_request.
        token = form.get("subject_token")
        if not token:
            raise BadRequest("subject_token is required (RFC 8693 §2.1)")
        if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            raise BadRequest(f"subject_token_type must be {ACCESS_TOKEN_TYPE}: Bastion exchanges its access tokens")
        _check_types(form)
        digest = hash_token(token)
        record = await self._store.find_token(digest)
        if record is None or record.kind != "access" or record.revoked or record.expires_at <= now:
            raise BadRequest("the subject_token is not a live Bastion access token: it is unknown, expired or revoked")
        return record, digest

    def _target(self, form: Mapping[str, str], client: Client, subject: TokenRecord) -> str:
        # RFC 8693 §2.1: `resource` (an absolute URI, RFC 8707) and `audience` both name the target;
        # for Bastion both are a virtual server's MCP URL. Neither given: the subject token's server.
        resource, audience = form.get("resource"), form.get("audience")
        if resource and audience and resource != audience:
            raise InvalidTarget("resource and audience name different servers; give one of them")
        target = resource or audience
        if not target:
            return subject.grant.server_id
        server = server_for_resource(self._snapshot(), self._url, target)
        if server.id != subject.grant.server_id and server.id not in client.server_ids:
            # RFC 8693 §2.2.2: invalid_target when the server will not issue a token for that target.
            raise InvalidTarget(
                f"{resource_url(self._url, server.slug)} is neither the subject token's server "
                "nor one this client may reach"
            )
        return server.id


def _check_types(form: Mapping[str, str]) -> None:
    if form.get("actor_token") or form.get("actor_token_type"):
        raise BadRequest("actor_token is not supported: the authenticated client is the actor")
    requested = form.get("requested_token_type")
    if requested is not None and requested != ACCESS_TOKEN_TYPE:
        raise BadRequest(f"requested_token_type must be {ACCESS_TOKEN_TYPE}: Bastion issues access tokens only")
