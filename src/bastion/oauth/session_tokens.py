"""Auth-session tokens: short-lived JWTs that carry a login or connection flow across redirects.

They are signed by Bastion's own `KeyRing` and only ever verified by Bastion.
The audience `{issuer}/session` and the explicit `typ` keep them from being
mistaken for (or replayed as) any other token Bastion signs or accepts, and
`purpose` keeps a token minted for one flow out of another.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from bastion.errors import BastionError
from bastion.oauth.jwt import InvalidToken, verify_jwt
from bastion.oauth.keys import SIGNING_ALGORITHM, KeyRing

__all__ = ["SESSION_JWT_TYPE", "SessionTokens"]

# RFC 8725 §3.11: an explicit type no other JWT Bastion handles carries.
SESSION_JWT_TYPE = "bastion-session+jwt"

_REGISTERED = frozenset({"iss", "sub", "aud", "iat", "exp", "jti", "purpose", "nbf"})
_REQUIRED = ("iss", "sub", "aud", "exp", "iat", "jti", "purpose")
# Issuer and verifier share Bastion's clocks, so skew is a few seconds at most.
_LEEWAY_SECONDS = 5


class SessionTokens:
    def __init__(
        self,
        keyring_provider: Callable[[], KeyRing],
        issuer: str,
        ttl_seconds: int = 600,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        # A provider, not a ring: rotation swaps the ring and both sides must see the new one.
        self._keyring = keyring_provider
        self._issuer = issuer
        self._audience = f"{issuer}/session"
        self._ttl = ttl_seconds
        self._now = now

    @property
    def audience(self) -> str:
        return self._audience

    def issue(self, subject: str, *, purpose: str, extra: dict[str, Any] | None = None) -> str:
        clash = _REGISTERED.intersection(extra or {})
        if clash:
            raise BastionError(f"Session token extras may not override registered claims: {sorted(clash)}.")
        issued_at = int(self._now())
        claims: dict[str, Any] = {
            **(extra or {}),
            "iss": self._issuer,
            "sub": subject,
            "aud": self._audience,
            "iat": issued_at,
            "exp": issued_at + self._ttl,
            # RFC 7519 §4.1.7: a unique id lets a flow mark a token as spent.
            "jti": secrets.token_urlsafe(16),
            "purpose": purpose,
        }
        return self._keyring().sign(claims, typ=SESSION_JWT_TYPE)

    def renew(self, claims: Mapping[str, Any], *, max_age: int) -> str | None:
        """Sliding renewal: a new token for the same session (its extra claims carried over), once
        more than half of this one's lifetime has passed. None before that, and once the new one
        would outlive `max_age` seconds since the session began (`auth_time`, else this token's
        `iat`): a session kept in use still ends then, and one left idle ends with its token."""
        now = self._now()
        began = int(claims.get("auth_time", claims["iat"]))
        if now - claims["iat"] < self._ttl / 2 or now + self._ttl > began + max_age:
            return None
        extra = {name: value for name, value in claims.items() if name not in _REGISTERED}
        # A session from before session ids: its first token's jti names it from here on, so a
        # sign-out (and its CSRF token) covers every renewal of it.
        extra.setdefault("sid", claims["jti"])
        return self.issue(claims["sub"], purpose=claims["purpose"], extra={**extra, "auth_time": began})

    def verify(self, token: str, *, purpose: str) -> dict[str, Any]:
        claims = verify_jwt(
            token,
            self._keyring().key_set(),
            issuer=self._issuer,
            audience=self._audience,
            algorithms=(SIGNING_ALGORITHM,),
            now=self._now(),
            leeway=_LEEWAY_SECONDS,
            typ=SESSION_JWT_TYPE,
            required=_REQUIRED,
        )
        if claims["purpose"] != purpose:
            raise InvalidToken("The session token was issued for another purpose.")
        return claims
