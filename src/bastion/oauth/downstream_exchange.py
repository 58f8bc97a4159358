"""Token exchange toward an origin's authorization server (RFC 8693): a person's token without a browser.

For an origin with auth mode `exchange`, Bastion trades, per person, a short JWT it signs
itself (typ `bastion-subject+jwt`: `sub` the person, `preferred_username` their name, `aud` the
origin's authorization server, published keys at Bastion's JWKS) for an access token of
that server, authenticating as its confidential client there. The origin's server must
trust Bastion as an issuer (for another Bastion: `BASTION_ENTERPRISE_IDPS`). No person
connects anything and nothing is stored: tokens live in memory per (origin, person) and
are exchanged again when a fifth of their life is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from ssl import SSLContext

import anyio

from bastion.net.egress import EgressPolicy
from bastion.oauth.downstream import DownstreamTokens, exchange_token
from bastion.oauth.downstream_grants import due
from bastion.oauth.exchange import SUBJECT_JWT_TYPE
from bastion.oauth.origin_tokens import OriginTokens
from bastion.vault.downstream_oauth import OAuthOrigin

__all__ = ["JWT_TOKEN_TYPE", "TokenExchanger"]

# (origin, its server, Bastion's client there, user id, user name, scopes)
_Key = tuple[str, str, str, str, str, tuple[str, ...]]

JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 — RFC 8693 §3 type name
_SUBJECT_LIFETIME = 120  # seconds: the subject JWT only has to reach the token endpoint
_MAX_CACHED = 50_000


class TokenExchanger:
    def __init__(
        self,
        minter: OriginTokens,
        *,
        egress: EgressPolicy,
        ssl: SSLContext | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._minter = minter
        self._egress = egress
        self._ssl = ssl
        self._now = now
        self._cache: dict[_Key, DownstreamTokens] = {}
        self._locks: dict[_Key, anyio.Lock] = {}

    async def bearer(
        self,
        origin_id: str,
        config: OAuthOrigin,
        *,
        tenant_id: str,
        user_id: str,
        username: str,
        scopes: tuple[str, ...],
    ) -> str:
        """An access token of the origin's server for `user_id`, from a token exchange."""
        # Everything the token depends on: an origin pointed at another server or client, or a user
        # renamed (the server maps accounts by name), gets a new exchange, not the old token.
        key = (origin_id, config.server.issuer, config.client.client_id, user_id, username, scopes)
        tokens = self._cache.get(key)
        if tokens is not None and not due(tokens, self._now()):
            return tokens.access_token
        async with self._locks.setdefault(key, anyio.Lock()):
            tokens = self._cache.get(key)
            if tokens is None or due(tokens, self._now()):
                subject = self._minter.mint(
                    audience=config.server.issuer,
                    subject=user_id,
                    tenant_id=tenant_id,
                    scopes=scopes,
                    lifetime=_SUBJECT_LIFETIME,
                    username=username,
                    typ=SUBJECT_JWT_TYPE,
                    single_use=True,  # a receiver that refuses replays would refuse a second exchange
                )
                tokens = await exchange_token(
                    config.server,
                    config.client,
                    subject,
                    JWT_TOKEN_TYPE,
                    egress=self._egress,
                    ssl=self._ssl,
                    scope=config.scope,
                )
                if len(self._cache) >= _MAX_CACHED:
                    self._cache.clear()
                self._cache[key] = tokens
            return tokens.access_token

    def forget(self, origin_id: str, user_id: str) -> None:
        """Drop a token the origin refused: the next call exchanges afresh."""
        for key in [k for k in self._cache if k[0] == origin_id and k[3] == user_id]:  # see `_Key`
            del self._cache[key]
