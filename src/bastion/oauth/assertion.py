"""draft-ietf-oauth-identity-assertion-authz-grant (ID-JAG) over the RFC 7523 jwt-bearer grant: enterprise SSO.

MCP "Enterprise-Managed Authorization": an enterprise IdP Bastion trusts signs
an Identity Assertion JWT Authorization Grant naming a user, a client and an
MCP server; the client presents it as `assertion` with grant_type
`urn:ietf:params:oauth:grant-type:jwt-bearer` and gets an access token for that
user and server, with no browser and no consent screen. "ID-JAG §n" below cites
draft -04; "EMA §n" the MCP extension.

Trust is configuration: a list of (issuer, jwks_uri) pairs. The issuer read
from the unverified token only picks which configured key set to verify with;
`verify_jwt` then checks that same issuer against the signed claims.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from ssl import SSLContext
from typing import Any

import orjson
from joserfc import jws
from joserfc.errors import JoseError

from bastion.catalog.snapshot import ServerView, Snapshot
from bastion.errors import BadRequest, InvalidGrant, UnauthorizedClient, UpstreamProtocolError
from bastion.identity.tokens import spent_key
from bastion.net import EgressPolicy, fetch_limited
from bastion.oauth.client_credentials import held_scopes, scopes_within
from bastion.oauth.jwt import Fetch, InvalidToken, JwksCache, peek_kid, verify_jwt
from bastion.oauth.provider import Client, Grant, OAuthStore, UserRecord
from bastion.oauth.resources import InvalidTarget, server_for_resource
from bastion.oauth.scopes import SUPPORTED_SCOPES
from bastion.oauth.token import TokenIssuer, TokenResponse

__all__ = [
    "ID_JAG_PROFILE",
    "ID_JAG_TYPE",
    "JWT_BEARER",
    "IdentityAssertionGrant",
    "jwks_fetcher",
]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"  # RFC 7523 §2.1
ID_JAG_TYPE = "oauth-id-jag+jwt"  # ID-JAG §3.1: the typ header every ID-JAG carries (RFC 8725 §3.11)
ID_JAG_PROFILE = "urn:ietf:params:oauth:grant-profile:id-jag"  # ID-JAG §7.2 / EMA §6: the metadata value
# ID-JAG §3.1: the claims an ID-JAG must carry (RFC 7523 §3 makes iss, sub, aud and exp required).
_REQUIRED = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id")


def jwks_fetcher(policy: EgressPolicy, *, ssl_context: SSLContext | None = None, max_bytes: int = 65_536) -> Fetch:
    """Fetches an IdP's JWK Set through the egress policy (a private IdP host must be allowlisted)."""

    async def fetch(url: str) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        fetched = await fetch_limited(
            policy, url, max_bytes=max_bytes, timeout_seconds=5.0, ssl=ssl_context, headers=headers
        )
        if fetched.status != 200:
            raise UpstreamProtocolError(f"the JWK Set at {url} answered HTTP {fetched.status}")
        try:
            document = orjson.loads(fetched.body)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"the JWK Set at {url} is not JSON") from None
        if not isinstance(document, dict):
            raise UpstreamProtocolError(f"the JWK Set at {url} is not a JSON object (RFC 7517 §5)")
        return document

    return fetch


class IdentityAssertionGrant:
    """The jwt-bearer grant handler for ID-JAGs (ID-JAG §4.4, EMA §5)."""

    def __init__(
        self,
        *,
        store: OAuthStore,
        issuer: TokenIssuer,
        snapshot: Callable[[], Snapshot],
        url: str,
        jwks: JwksCache,
        trusted: Sequence[tuple[str, str]] = (),
        algorithms: Sequence[str] = ("ES256", "RS256", "PS256"),
    ) -> None:
        self._store = store
        self._issuer = issuer
        self._snapshot = snapshot
        self._url = url
        self._jwks = jwks
        self._algorithms = tuple(algorithms)
        self._trusted: dict[str, str] = dict(trusted)  # issuer → jwks_uri; issuers compared exactly

    @property
    def trusted_issuers(self) -> tuple[str, ...]:
        return tuple(self._trusted)

    async def __call__(self, form: Mapping[str, str], client: Client, now: float) -> TokenResponse:
        if client.secret_hash is None:
            # EMA §5: the client authenticates with the credentials it holds here; a public client
            # proves nothing, and an ID-JAG is bound to an identified client (ID-JAG §4.4.1).
            raise UnauthorizedClient("the jwt-bearer grant needs a client authenticated with its client secret")
        assertion = form.get("assertion")
        if not assertion:
            # RFC 6749 §5.2: a missing required parameter is invalid_request (RFC 7523 §2.1 requires it).
            raise BadRequest("assertion is required: the ID-JAG issued by your identity provider (RFC 7523 §2.1)")
        claims = await self.verified(assertion, now, typ=ID_JAG_TYPE, required=_REQUIRED, what="assertion")
        if claims["client_id"] != client.client_id:
            # ID-JAG §4.4.1: the client_id claim must name the client that authenticated here.
            raise InvalidGrant("the assertion was issued to another client: its client_id claim is not this client")
        await self.refuse_replay(claims, now)
        server = self._server(claims, form, client)
        user = await self.user_for(claims)
        grant = Grant(
            family_id=secrets.token_hex(16),
            client_id=client.client_id,
            user_id=user.id,
            server_id=server.id,  # EMA §5.1: audience-restricted to the assertion's resource
            scopes=self.scopes_for(claims, form, client),
        )
        # No refresh token: the client asks the IdP for a fresh ID-JAG, so the enterprise's policy
        # (and its revocation of the user) is consulted again every time.
        return await self._issuer.issue(grant, refresh=False, now=now)

    async def verified(self, token: str, now: float, *, typ: str, required: Sequence[str], what: str) -> dict[str, Any]:
        """The claims of a JWT signed by a trusted issuer for this server (`aud`), of type `typ`:
        an ID-JAG here, or a token exchange's JWT subject token (`bastion.oauth.exchange`)."""
        issuer = _unverified_issuer(token, what)
        jwks_uri = self._trusted.get(issuer or "")
        if issuer is None or jwks_uri is None:
            # RFC 7523 §3 item 1: the issuer must be one this server trusts to assert identities.
            raise InvalidGrant(f"the {what}'s issuer (iss) is not a trusted enterprise identity provider")
        try:
            keys = await self._jwks.key_set(jwks_uri, kid=peek_kid(token))
            # RFC 7523 §3 items 1-9; ID-JAG §4.4.1: typ, aud = this issuer, signature by the IdP's key.
            return verify_jwt(
                token,
                keys,
                issuer=issuer,
                audience=self._url,
                algorithms=self._algorithms,
                now=now,
                typ=typ,
                required=tuple(required),
            )
        except InvalidToken as error:
            # RFC 7523 §3.1: every way an assertion can be invalid is invalid_grant.
            raise InvalidGrant(f"the {what} was refused: {error.message}") from None

    async def refuse_replay(self, claims: Mapping[str, Any], now: float) -> None:
        # RFC 7523 §3 item 7: an assertion's jti may be used once. Remembered in the store until the
        # assertion expires, so another replica, or this one after a restart, refuses it too.
        key = spent_key("assertion", str(claims["iss"]), str(claims["jti"]))
        if not await self._store.use_once(key, float(claims["exp"]), now):
            raise InvalidGrant("the assertion was already used (its jti was seen before); ask the IdP for a new one")

    def _server(self, claims: Mapping[str, Any], form: Mapping[str, str], client: Client) -> ServerView:
        claimed = claims.get("resource")
        if claimed is not None and not isinstance(claimed, str):
            raise InvalidGrant("the assertion's resource claim must be a single URI (EMA §4.3)")
        snapshot = self._snapshot()
        if claimed:
            try:
                server = server_for_resource(snapshot, self._url, claimed)
            except InvalidTarget:
                raise InvalidGrant(f"the assertion's resource {claimed} is not a published server here") from None
            requested = form.get("resource")
            if requested and server_for_resource(snapshot, self._url, requested).id != server.id:
                raise InvalidTarget("resource differs from the resource claim of the assertion")
        else:
            server = server_for_resource(snapshot, self._url, form.get("resource"))
        if server.id not in client.server_ids:
            raise InvalidTarget(f"this client is not allowed to reach {claimed or form.get('resource')}")
        return server

    async def user_for(self, claims: Mapping[str, Any], names: Sequence[str] = ("email", "sub")) -> UserRecord:
        # The IdP's user becomes the Bastion user of that name: the email claim first (what
        # enterprises name people by), then sub. Nobody is created here: an unknown person
        # has no access until an administrator adds them.
        for name in names:
            value = claims.get(name)
            if name == "email" and str(claims.get("email_verified")).lower() == "false":  # some IdPs send a string
                continue  # OIDC Core §5.1: the IdP says it did not check the address: it names nobody
            if isinstance(value, str) and value:
                user = await self._store.find_user_by_name(value)
                if user is not None:
                    return user
        raise InvalidGrant(
            f"no Bastion user matches the token's {' or '.join(names)} claim; an administrator must add one"
        )

    def scopes_for(self, claims: Mapping[str, Any], form: Mapping[str, str], client: Client) -> tuple[str, ...]:
        granted = claims.get("scope")
        if granted is not None and not isinstance(granted, str):
            raise InvalidGrant("the assertion's scope claim must be a space-delimited string (ID-JAG §3.1)")
        allowed = held_scopes(client)
        if granted:
            # Names this server does not define are the IdP's business, not an error here.
            known = " ".join(name for name in granted.split() if name in SUPPORTED_SCOPES)
            if not known:
                raise InvalidGrant("the assertion grants none of this server's scopes")
            allowed = scopes_within(known, allowed)
        # EMA §7.2.1: the intersection of the requested scopes and those the IdP granted.
        return scopes_within(form.get("scope"), allowed)


def _unverified_issuer(token: str, what: str) -> str | None:
    """The iss of a token not yet verified: only for choosing which trusted keys to verify with."""
    try:
        payload = orjson.loads(jws.extract_compact(token.encode("utf-8", "surrogatepass")).payload)
    except (JoseError, ValueError):  # orjson.JSONDecodeError is a ValueError
        raise InvalidGrant(f"the {what} is not a well-formed compact JWT (RFC 7519 §7.2)") from None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer if isinstance(issuer, str) else None
