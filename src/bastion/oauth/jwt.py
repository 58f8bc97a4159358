"""Validating the JWTs Bastion receives: IdP identity assertions, OIDC ID tokens, its own session tokens.

The header is judged before any key is touched (RFC 8725 §3.1: the algorithm is
the verifier's choice, never the token's), then joserfc verifies the signature
and the registered claims. Every refusal is an `InvalidToken` (401
invalid_token) whose message says which rule failed and never quotes the token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import anyio
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    InvalidPayloadError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key, KeySet, KeySetSerialization
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from bastion.errors import Unauthenticated, UpstreamProtocolError

__all__ = ["DEFAULT_REQUIRED", "InvalidToken", "JwksCache", "UnknownSigningKey", "peek_kid", "verify_jwt"]

DEFAULT_REQUIRED: tuple[str, ...] = ("iss", "aud", "exp", "iat")


class InvalidToken(Unauthenticated):
    """A JWT failed validation; the message names the rule it broke."""


class UnknownSigningKey(InvalidToken):
    """No trusted key matches the token's kid: the issuer may have rotated keys."""


def verify_jwt(
    token: str,
    keys: KeySet,
    *,
    issuer: str,
    audience: str,
    algorithms: Sequence[str],
    now: float,
    leeway: float = 30,
    max_age: float | None = None,
    typ: str | None = None,
    required: Sequence[str] = DEFAULT_REQUIRED,
) -> dict[str, Any]:
    """The token's claims, once its header, signature and claims all pass."""
    header = _header(token)
    registry = _registry(header, algorithms)
    if typ is not None:
        _check_typ(header, typ)
    key = _key(keys, header)
    claims = _verified_claims(token, key, registry)
    _check_claims(claims, issuer=issuer, audience=audience, now=now, leeway=leeway, required=required)
    if max_age is not None:
        _check_age(claims, now=now, leeway=leeway, max_age=max_age)
    return claims


def peek_kid(token: str) -> str | None:
    """The unverified kid of a token: only for choosing which keys to fetch, never for trust."""
    kid = _header(token).get("kid")
    return kid if isinstance(kid, str) else None


def _header(token: str) -> dict[str, Any]:
    try:
        header = jws.extract_compact(token.encode("utf-8", "surrogatepass")).headers()
    except (JoseError, ValueError) as error:  # RFC 7519 §7.2 steps 1-4
        raise InvalidToken("The token is not a well-formed compact JWS (RFC 7519 §7.2).") from error
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise InvalidToken("The token header is not a JSON object with an alg (RFC 7515 §4.1.1).")
    return header


def _registry(header: dict[str, Any], algorithms: Sequence[str]) -> jws.JWSRegistry:
    alg: str = header["alg"]
    if alg.lower() == "none":  # RFC 8725 §3.2: unsigned tokens are never accepted
        raise InvalidToken("Unsigned tokens (alg none) are refused (RFC 8725 §3.2).")
    allowed = [name for name in algorithms if name.lower() != "none"]
    if alg not in allowed:  # RFC 8725 §3.1: only the algorithms this verifier expects
        raise InvalidToken(f"The token's algorithm is not one of the accepted ones: {', '.join(allowed)}.")
    # strict_check_header=False: IdPs add private header parameters; crit is still enforced (RFC 7515 §4.1.11).
    registry = jws.JWSRegistry(algorithms=allowed, strict_check_header=False)
    try:
        registry.get_alg(alg)
    except JoseError as error:
        raise InvalidToken("The token's algorithm is not one this service implements.") from error
    try:
        registry.check_header(header)
    except JoseError as error:  # RFC 7515 §4.1.11: an unknown crit parameter must be refused
        raise InvalidToken("The token header has a mistyped or unknown critical parameter.") from error
    return registry


def _media_type(value: str) -> str:
    # RFC 7515 §4.1.9: compare case-insensitively, with "application/" implied when absent.
    value = value.lower()
    return value if "/" in value else f"application/{value}"


def _check_typ(header: dict[str, Any], typ: str) -> None:
    actual = header.get("typ")
    if not isinstance(actual, str) or _media_type(actual) != _media_type(typ):
        # RFC 8725 §3.11: explicit typing keeps one kind of JWT from passing as another.
        raise InvalidToken(f"The token's typ header is not {typ!r} (RFC 8725 §3.11).")


def _key(keys: KeySet, header: dict[str, Any]) -> Key:
    kid = header.get("kid")
    try:
        key = keys.get_by_kid(kid if isinstance(kid, str) else None, {"use": "sig"})
    except InvalidKeyIdError as error:  # RFC 7515 §4.1.4
        raise UnknownSigningKey("No trusted signing key matches the token's kid (RFC 7515 §4.1.4).") from error
    try:
        # RFC 7517 §4.2/§4.4: a key published for one use or algorithm serves no other.
        key.check_use("sig")
        key.check_alg(header["alg"])
    except JoseError as error:
        raise InvalidToken("The trusted key named by the token does not fit the token's algorithm.") from error
    return key


def _verified_claims(token: str, key: Key, registry: jws.JWSRegistry) -> dict[str, Any]:
    try:
        return jwt.decode(token, key, registry=registry).claims
    except BadSignatureError as error:  # RFC 7515 §5.2 step 8
        raise InvalidToken("The token's signature does not verify.") from error
    except InvalidPayloadError as error:  # RFC 7519 §7.2 step 10
        raise InvalidToken("The token's claims are not a JSON object (RFC 7519 §7.2).") from error
    except (JoseError, ValueError) as error:  # RFC 7518 §3.4: an ES256 key must be a P-256 EC key
        raise InvalidToken("The trusted key named by the token does not fit the token's algorithm.") from error


def _check_claims(
    claims: dict[str, Any], *, issuer: str, audience: str, now: float, leeway: float, required: Sequence[str]
) -> None:
    options: dict[str, ClaimsOption] = {name: {"essential": True} for name in required}
    # RFC 7519 §4.1.1 / OIDC Core §3.1.3.7 step 2: iss is an exact string match.
    options["iss"] = {"essential": True, "value": issuer}
    # RFC 7519 §4.1.3: aud is a string or a list, and must name this recipient.
    options["aud"] = {"essential": True, "value": audience}
    # joserfc counts whole seconds; the leeway dwarfs the sub-second rounding.
    checker = JWTClaimsRegistry(now=int(now), leeway=int(leeway), **options)
    try:
        checker.validate(claims)
    except MissingClaimError as error:
        raise InvalidToken(f"The token lacks required claims: {error.claim} (RFC 7519 §4.1).") from error
    except ExpiredTokenError as error:  # RFC 7519 §4.1.4
        raise InvalidToken("The token has expired (RFC 7519 §4.1.4).") from error
    except InvalidClaimError as error:
        raise InvalidToken(_claim_message(error)) from error


def _claim_message(error: InvalidClaimError) -> str:
    if error.claim == "iss":
        return "The token was issued by another issuer than the one trusted here (RFC 7519 §4.1.1)."
    if error.claim == "aud":
        return "The token's audience does not include this service (RFC 7519 §4.1.3)."
    # joserfc's own text is precise here: "The token is not yet valid" (nbf, RFC 7519 §4.1.5),
    # "The token was issued in the future" (iat, §4.1.6), or a claim of the wrong type.
    return f"The token's {error.claim} claim is refused: {error.description}."


def _check_age(claims: dict[str, Any], *, now: float, leeway: float, max_age: float) -> None:
    issued_at = claims.get("iat")
    if not isinstance(issued_at, int | float) or isinstance(issued_at, bool):
        raise InvalidToken("The token lacks the iat claim its maximum age is measured from (RFC 7519 §4.1.6).")
    if now - issued_at > max_age + leeway:
        raise InvalidToken(f"The token was issued more than {max_age:g} seconds ago and is too old.")


Fetch = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass
class _Cached:
    keys: KeySet
    fetched_at: float


class JwksCache:
    """Remote JWK Sets by URL, kept for `ttl_seconds`, refetched early only for an unknown kid.

    `fetch` is injected so the caller decides how to reach the network (SSRF-safe).
    A kid the cached set lacks triggers one refetch (the issuer rotated its keys,
    RFC 7517 §5), but at most one per `min_refetch_seconds` per URL, so a stream
    of tokens with made-up kids cannot turn into a stream of fetches.
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        now: Callable[[], float],
        ttl_seconds: float = 3600,
        min_refetch_seconds: float = 60,
    ) -> None:
        self._fetch = fetch
        self._now = now
        self._ttl = ttl_seconds
        self._min_refetch = min_refetch_seconds
        self._cache: dict[str, _Cached] = {}
        self._attempted: dict[str, float] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def key_set(self, url: str, *, kid: str | None = None) -> KeySet:
        """The JWK Set at `url`; pass the token's kid (`peek_kid`) so a rotated key is picked up."""
        lock = self._locks.setdefault(url, anyio.Lock())
        async with lock:  # one fetch per URL at a time: concurrent callers share its result
            cached = self._cache.get(url)
            if cached is None or self._stale(cached) or self._may_refetch(url, cached, kid):
                cached = await self._refresh(url)
            return cached.keys

    def _stale(self, cached: _Cached) -> bool:
        return self._now() - cached.fetched_at >= self._ttl

    def _may_refetch(self, url: str, cached: _Cached, kid: str | None) -> bool:
        if kid is None or any(key.kid == kid for key in cached.keys):
            return False
        return self._now() - self._attempted.get(url, cached.fetched_at) >= self._min_refetch

    async def _refresh(self, url: str) -> _Cached:
        self._attempted[url] = self._now()
        document = await self._fetch(url)
        try:
            # Untrusted JSON: joserfc validates its shape and every key in it.
            keys = KeySet.import_key_set(cast(KeySetSerialization, document))
        except (JoseError, ValueError, KeyError, TypeError) as error:
            raise UpstreamProtocolError(f"The document at {url} is not a usable JWK Set (RFC 7517 §5).") from error
        cached = _Cached(keys=keys, fetched_at=self._now())
        self._cache[url] = cached
        return cached
