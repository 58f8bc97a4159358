"""verify_jwt refuses each bad JWT with its own reason; JwksCache fetches sparingly."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, KeySet

from bastion.errors import Unauthenticated, UpstreamProtocolError
from bastion.oauth.jwt import InvalidToken, JwksCache, UnknownSigningKey, peek_kid, verify_jwt
from bastion.oauth.keys import KeyRing

NOW = 1_700_000_000.0
ISSUER = "https://idp.example.com"
AUDIENCE = "https://bastion.example.com"
RING = KeyRing.fresh(NOW)


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ada", "iat": int(NOW), "exp": int(NOW) + 300}
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _verify(token: str, *, keys: KeySet | None = None, **options: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["ES256"], "now": NOW}
    settings.update(options)
    return verify_jwt(token, keys if keys is not None else RING.key_set(), **settings)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: object) -> str:
    return _b64(json.dumps(value).encode())


def test_a_valid_token_yields_its_claims() -> None:
    assert _verify(RING.sign(_claims(), typ="JWT")) == _claims()


def test_a_token_whose_audience_list_contains_ours_is_accepted() -> None:
    claims = _verify(RING.sign(_claims(aud=["https://other.example.com", AUDIENCE]), typ="JWT"))
    assert claims["aud"] == ["https://other.example.com", AUDIENCE]


def test_the_refusal_is_a_401_invalid_token() -> None:
    assert issubclass(InvalidToken, Unauthenticated)
    assert InvalidToken.http_status == 401
    assert InvalidToken.oauth_error == "invalid_token"


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b", "a.b.c.d", "!!!.e30.", f"{_segment({'typ': 'JWT'})}.e30."])
def test_a_token_that_is_not_a_compact_jws_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken, match="not a well-formed compact JWS"):
        _verify(token)


@pytest.mark.parametrize("header", [["alg"], {"alg": 256}, {"alg": None}])
def test_a_token_whose_header_is_not_an_object_with_a_string_alg_is_refused(header: object) -> None:
    with pytest.raises(InvalidToken, match="not a JSON object with an alg"):
        _verify(f"{_segment(header)}.e30.")


def test_an_unsigned_alg_none_token_is_refused_before_any_key_is_consulted() -> None:
    for alg in ("none", "None", "NONE"):
        token = f"{_segment({'alg': alg, 'kid': RING.active.kid})}.{_segment(_claims())}."
        with pytest.raises(InvalidToken, match="alg none"):
            _verify(token, algorithms=["ES256", "none"])


def test_an_algorithm_outside_the_accepted_list_is_refused() -> None:
    with pytest.raises(InvalidToken, match="not one of the accepted ones: RS256"):
        _verify(RING.sign(_claims(), typ="JWT"), algorithms=["RS256"])


@pytest.mark.parametrize(
    "extra",
    [{"crit": ["x-bastion-must-understand"], "x-bastion-must-understand": True}, {"kid": 42}, {"crit": "exp"}],
)
def test_a_header_with_an_unknown_critical_or_mistyped_parameter_is_refused(extra: dict[str, Any]) -> None:
    header = {"alg": "ES256", "kid": RING.active.kid, **extra}
    with pytest.raises(InvalidToken, match="mistyped or unknown critical parameter"):
        _verify(f"{_segment(header)}.{_segment(_claims())}.{_b64(b'0' * 64)}")


def test_an_accepted_algorithm_this_service_does_not_implement_is_refused() -> None:
    with pytest.raises(InvalidToken, match="not one this service implements"):
        _verify(f"{_segment({'alg': 'XS999'})}.e30.", algorithms=["ES256", "XS999"])


def _bare_key_set() -> KeySet:
    """RING's public key without use or alg: only the key type and curve can rule an algorithm out."""
    public = {name: RING.active.private_jwk[name] for name in ("kty", "crv", "x", "y")}
    return KeySet([ECKey.import_key({**public, "kid": RING.active.kid})])


@pytest.mark.parametrize("keys", [RING.key_set(), _bare_key_set()], ids=["published-alg", "bare-key"])
def test_an_hmac_token_is_refused_even_if_hs256_is_accepted_because_an_ec_key_is_no_hmac_secret(keys: KeySet) -> None:
    header = _segment({"alg": "HS256", "kid": RING.active.kid})
    with pytest.raises(InvalidToken, match="does not fit the token's algorithm"):
        _verify(f"{header}.{_segment(_claims())}.{_b64(b'0' * 32)}", keys=keys, algorithms=["ES256", "HS256"])


@pytest.mark.parametrize("keys", [RING.key_set(), _bare_key_set()], ids=["published-alg", "bare-key"])
def test_a_key_of_the_wrong_curve_for_the_algorithm_is_refused(keys: KeySet) -> None:
    p384 = ECKey.generate_key("P-384", private=True)
    header = {"alg": "ES384", "kid": RING.active.kid}
    token = jws.serialize_compact(header, json.dumps(_claims()), p384, algorithms=["ES384"])
    with pytest.raises(InvalidToken, match="does not fit the token's algorithm"):
        _verify(token, keys=keys, algorithms=["ES256", "ES384"])


def test_a_token_naming_an_unknown_kid_is_refused_as_an_unknown_signing_key() -> None:
    with pytest.raises(UnknownSigningKey, match="No trusted signing key"):
        _verify(KeyRing.fresh(NOW).sign(_claims(), typ="JWT"))


def test_a_token_without_kid_is_refused_when_the_key_set_holds_several_keys() -> None:
    ring = RING.rotate(NOW)
    token = jws.serialize_compact({"alg": "ES256"}, json.dumps(_claims()), ECKey.import_key(ring.active.private_jwk))
    with pytest.raises(UnknownSigningKey):
        _verify(token, keys=ring.key_set())


def test_a_token_whose_signature_does_not_verify_is_refused() -> None:
    header, payload, _ = RING.sign(_claims(), typ="JWT").split(".")
    other_signature = RING.sign(_claims(sub="grace"), typ="JWT").split(".")[2]
    with pytest.raises(InvalidToken, match="signature does not verify"):
        _verify(f"{header}.{payload}.{other_signature}")


def test_a_signed_payload_that_is_not_a_json_object_is_refused() -> None:
    private = ECKey.import_key(RING.active.private_jwk)
    array = jws.serialize_compact({"alg": "ES256", "kid": RING.active.kid}, b"[1, 2]", private)
    with pytest.raises(InvalidToken, match="not a JSON object"):
        _verify(array)


def test_a_token_from_another_issuer_is_refused() -> None:
    with pytest.raises(InvalidToken, match="another issuer"):
        _verify(RING.sign(_claims(iss="https://idp.example.com/"), typ="JWT"))


@pytest.mark.parametrize("audience", ["https://other.example.com", ["https://other.example.com"], []])
def test_a_token_for_another_audience_is_refused(audience: object) -> None:
    with pytest.raises(InvalidToken, match="audience does not include this service"):
        _verify(RING.sign(_claims(aud=audience), typ="JWT"))


def test_an_expired_token_is_refused_but_the_leeway_absorbs_clock_skew() -> None:
    token = RING.sign(_claims(exp=int(NOW) - 10), typ="JWT")
    assert _verify(token, leeway=30)["sub"] == "ada"
    with pytest.raises(InvalidToken, match="expired"):
        _verify(token, leeway=0)


def test_a_token_not_yet_valid_is_refused() -> None:
    with pytest.raises(InvalidToken, match="nbf claim is refused: The token is not yet valid"):
        _verify(RING.sign(_claims(nbf=int(NOW) + 120), typ="JWT"))


def test_a_token_issued_in_the_future_beyond_the_leeway_is_refused() -> None:
    assert _verify(RING.sign(_claims(iat=int(NOW) + 20), typ="JWT"))["sub"] == "ada"
    with pytest.raises(InvalidToken, match="iat claim is refused: The token was issued in the future"):
        _verify(RING.sign(_claims(iat=int(NOW) + 120), typ="JWT"))


def test_a_claim_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(InvalidToken, match="exp claim is refused"):
        _verify(RING.sign(_claims(exp="tomorrow"), typ="JWT"))


def test_a_token_older_than_max_age_is_refused() -> None:
    token = RING.sign(_claims(iat=int(NOW) - 600), typ="JWT")
    assert _verify(token, max_age=3600)["sub"] == "ada"
    with pytest.raises(InvalidToken, match="more than 300 seconds ago"):
        _verify(token, max_age=300)


def test_max_age_needs_an_iat_even_when_iat_is_not_otherwise_required() -> None:
    with pytest.raises(InvalidToken, match="lacks the iat claim"):
        _verify(RING.sign(_claims(iat=None), typ="JWT"), max_age=300, required=("iss", "aud", "exp"))


def test_a_token_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(InvalidToken, match="typ header is not 'id-jag\\+jwt'"):
        _verify(RING.sign(_claims(), typ="JWT"), typ="id-jag+jwt")


def test_typ_compares_as_a_media_type() -> None:
    token = RING.sign(_claims(), typ="Application/ID-JAG+JWT")
    assert _verify(token, typ="id-jag+jwt")["sub"] == "ada"


@pytest.mark.parametrize("claim", ["iss", "aud", "exp", "iat"])
def test_a_token_missing_a_required_claim_is_refused(claim: str) -> None:
    with pytest.raises(InvalidToken, match=f"lacks required claims: {claim}"):
        _verify(RING.sign(_claims(**{claim: None}), typ="JWT"))


def test_extra_required_claims_are_enforced() -> None:
    with pytest.raises(InvalidToken, match="lacks required claims: nonce"):
        _verify(RING.sign(_claims(), typ="JWT"), required=("iss", "aud", "exp", "iat", "nonce"))


def test_peek_kid_reads_the_unverified_kid() -> None:
    assert peek_kid(RING.sign(_claims(), typ="JWT")) == RING.active.kid
    with pytest.raises(InvalidToken):
        peek_kid("garbage")


class _Clock:
    def __init__(self) -> None:
        self.time = NOW

    def __call__(self) -> float:
        return self.time


class _IdP:
    """An identity provider in process: serves its KeyRing's JWKS and counts the fetches."""

    def __init__(self) -> None:
        self.ring = KeyRing.fresh(NOW)
        self.fetches = 0
        self.document: dict[str, Any] | None = None

    async def fetch(self, url: str) -> dict[str, Any]:
        assert url == f"{ISSUER}/jwks"
        self.fetches += 1
        return self.document if self.document is not None else self.ring.jwks()


def _cache(idp: _IdP, clock: _Clock) -> JwksCache:
    return JwksCache(idp.fetch, now=clock, ttl_seconds=3600, min_refetch_seconds=60)


@pytest.mark.anyio
async def test_the_cache_serves_a_fetched_key_set_until_its_ttl_runs_out() -> None:
    idp, clock = _IdP(), _Clock()
    cache = _cache(idp, clock)
    token = idp.ring.sign(_claims(), typ="JWT")
    for _ in range(3):
        assert _verify(token, keys=await cache.key_set(f"{ISSUER}/jwks", kid=peek_kid(token)))["sub"] == "ada"
    assert idp.fetches == 1
    clock.time += 3600
    await cache.key_set(f"{ISSUER}/jwks")
    assert idp.fetches == 2


@pytest.mark.anyio
async def test_an_unknown_kid_triggers_one_refetch_that_picks_up_the_idps_rotated_key() -> None:
    idp, clock = _IdP(), _Clock()
    cache = _cache(idp, clock)
    await cache.key_set(f"{ISSUER}/jwks")
    clock.time += 120
    idp.ring = idp.ring.rotate(clock.time)
    token = idp.ring.sign(_claims(), typ="JWT")
    keys = await cache.key_set(f"{ISSUER}/jwks", kid=peek_kid(token))
    assert _verify(token, keys=keys)["sub"] == "ada"
    assert idp.fetches == 2


@pytest.mark.anyio
async def test_garbage_kids_cause_at_most_one_refetch_per_interval() -> None:
    idp, clock = _IdP(), _Clock()
    cache = _cache(idp, clock)
    await cache.key_set(f"{ISSUER}/jwks")
    clock.time += 60
    for n in range(50):
        keys = await cache.key_set(f"{ISSUER}/jwks", kid=f"bogus-{n}")
    assert idp.fetches == 2
    with pytest.raises(UnknownSigningKey):
        _verify(KeyRing.fresh(NOW).sign(_claims(), typ="JWT"), keys=keys)
    clock.time += 60
    await cache.key_set(f"{ISSUER}/jwks", kid="bogus-again")
    assert idp.fetches == 3


@pytest.mark.anyio
@pytest.mark.parametrize("document", [{}, {"keys": []}, {"keys": "x"}, {"keys": [{"kty": "EC", "crv": "P-256"}]}])
async def test_a_document_that_is_not_a_jwk_set_is_an_upstream_protocol_error(document: dict[str, Any]) -> None:
    idp, clock = _IdP(), _Clock()
    idp.document = document
    with pytest.raises(UpstreamProtocolError, match="not a usable JWK Set"):
        await _cache(idp, clock).key_set(f"{ISSUER}/jwks")
