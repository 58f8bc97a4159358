"""Short-lived JWTs Bastion mints for origins (scenario A): the JWT profile for access tokens (RFC 9068).

An origin configured with `auth_mode` `jwt` receives, on each request, a token Bastion
signed with its own key (published at `/oauth/jwks.json`, so the origin verifies it
without sharing a secret): `iss` Bastion, `aud` the origin, `sub` the user the call is
made for (`bastion` for the gateway's own requests: handshake, discovery), `org_id`
the tenant, `scope` what the user's token grants, a few minutes of life. Never the
client's token: that one stays at Bastion.

Tokens are cached per (audience, subject, tenant, scopes) and re-minted once a fifth
of their life is left, so a busy origin costs one signature per user every few minutes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from bastion.oauth.keys import KeyRing

__all__ = ["ORIGIN_JWT_TYPE", "SERVICE_SUBJECT", "OriginTokens"]

ORIGIN_JWT_TYPE = "at+jwt"  # RFC 9068 §2.1
SERVICE_SUBJECT = "bastion"  # the gateway itself, for requests made for no user
_MAX_CACHED = 10_000


class OriginTokens:
    def __init__(self, keyring: Callable[[], KeyRing], issuer: str, *, now: Callable[[], float] = time.time) -> None:
        self._keyring = keyring  # a provider: a rotation swaps the ring
        self._issuer = issuer
        self._now = now
        self._cache: dict[tuple[str, str, str, tuple[str, ...], int, str, str | None, str], tuple[str, float]] = {}

    def mint(
        self,
        *,
        audience: str,
        subject: str,
        tenant_id: str,
        scopes: tuple[str, ...],
        lifetime: int,
        username: str | None = None,
        typ: str = ORIGIN_JWT_TYPE,
        single_use: bool = False,
    ) -> str:
        """`username`, when given, is carried as `preferred_username` (what an authorization server
        that trusts Bastion maps its own accounts by, in a token exchange). `single_use`: a fresh
        token (its own `jti`) every time, never cached: an assertion a receiver refuses to see twice,
        such as a token exchange's subject token."""
        now = self._now()
        kid = self._keyring().active.kid
        key = (audience, subject, tenant_id, scopes, lifetime, kid, username, typ)
        cached = None if single_use else self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        issued = int(now)
        claims: dict[str, object] = {"preferred_username": username} if username else {}
        token = self._keyring().sign(
            {
                **claims,
                "iss": self._issuer,
                "aud": audience,
                "sub": subject,
                "client_id": self._issuer,  # RFC 9068 §2.2: the client the token was issued to: Bastion
                "org_id": tenant_id,
                "scope": " ".join(scopes),
                "iat": issued,
                "exp": issued + lifetime,
                "jti": secrets.token_urlsafe(12),
            },
            typ=typ,
        )
        if single_use:
            return token
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = (token, now + lifetime * 0.8)
        return token
