"""Session tokens: what Bastion issues it accepts back, and no forgery, tampering or stale key gets through."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from bastion.errors import BastionError
from bastion.oauth.jwt import InvalidToken, UnknownSigningKey
from bastion.oauth.keys import KeyRing
from bastion.oauth.session_tokens import SESSION_JWT_TYPE, SessionTokens

NOW = 1_700_000_000.0
ISSUER = "https://bastion.example.com"


class _Holder:
    """What the lead wires in: a mutable slot the rotation job swaps rings into."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self.time = NOW

    def keyring(self) -> KeyRing:
        return self.ring

    def now(self) -> float:
        return self.time


def _tokens(issuer: str = ISSUER, holder: _Holder | None = None) -> tuple[SessionTokens, _Holder]:
    holder = holder or _Holder(KeyRing.fresh(NOW))
    return SessionTokens(holder.keyring, issuer, 600, now=holder.now), holder


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: object) -> str:
    return _b64(json.dumps(value).encode())


def _forge_claims(tokens: SessionTokens) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "sub": "mallory",
        "aud": tokens.audience,
        "iat": int(NOW),
        "exp": int(NOW) + 600,
        "jti": "forged",
        "purpose": "login",
    }


def test_an_issued_token_verifies_and_carries_its_claims() -> None:
    tokens, holder = _tokens()
    token = tokens.issue("ada", purpose="login", extra={"return_to": "/admin"})
    claims = tokens.verify(token, purpose="login")
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "ada"
    assert claims["aud"] == f"{ISSUER}/session"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["purpose"] == "login"
    assert claims["return_to"] == "/admin"
    header = jwt.decode(token, holder.ring.key_set(), algorithms=["ES256"]).header
    assert header == {"alg": "ES256", "kid": holder.ring.active.kid, "typ": SESSION_JWT_TYPE}


def test_every_token_gets_its_own_jti() -> None:
    tokens, _ = _tokens()
    first, second = (tokens.verify(tokens.issue("ada", purpose="login"), purpose="login") for _ in range(2))
    assert first["jti"] != second["jti"]


def test_a_token_issued_for_another_purpose_is_refused() -> None:
    tokens, _ = _tokens()
    with pytest.raises(InvalidToken, match="another purpose"):
        tokens.verify(tokens.issue("ada", purpose="connect"), purpose="login")


def test_extras_may_not_override_registered_claims() -> None:
    tokens, _ = _tokens()
    with pytest.raises(BastionError, match="registered claims"):
        tokens.issue("ada", purpose="login", extra={"sub": "root"})


def test_a_token_signed_by_another_issuers_key_ring_is_refused() -> None:
    ours, _ = _tokens()
    theirs, _ = _tokens(issuer="https://evil.example.com")
    with pytest.raises(UnknownSigningKey):
        ours.verify(theirs.issue("ada", purpose="login"), purpose="login")


def test_a_token_from_another_ring_claiming_our_issuer_is_refused() -> None:
    ours, _ = _tokens()
    impostor, _ = _tokens()
    with pytest.raises(UnknownSigningKey):
        ours.verify(impostor.issue("ada", purpose="login"), purpose="login")


def test_a_hand_crafted_alg_none_token_is_refused() -> None:
    tokens, holder = _tokens()
    header = {"alg": "none", "typ": SESSION_JWT_TYPE, "kid": holder.ring.active.kid}
    token = f"{_segment(header)}.{_segment(_forge_claims(tokens))}."
    with pytest.raises(InvalidToken, match="alg none"):
        tokens.verify(token, purpose="login")


@pytest.mark.parametrize("secret_form", ["pem", "jwk-json"])
def test_an_hs256_token_keyed_with_our_public_key_is_refused(secret_form: str) -> None:
    # The classic algorithm-confusion attack: the public key, which anyone can fetch, as an HMAC secret.
    tokens, holder = _tokens()
    public_jwk = holder.ring.jwks()["keys"][0]
    public = ECKey.import_key(public_jwk)
    secret = public.as_pem(private=False) if secret_form == "pem" else json.dumps(public_jwk).encode()
    header = {"alg": "HS256", "typ": SESSION_JWT_TYPE, "kid": holder.ring.active.kid}
    signing_input = f"{_segment(header)}.{_segment(_forge_claims(tokens))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken, match="not one of the accepted ones: ES256"):
        tokens.verify(f"{signing_input}.{_b64(signature)}", purpose="login")


def test_a_token_with_a_tampered_payload_is_refused() -> None:
    tokens, _ = _tokens()
    header, payload, signature = tokens.issue("ada", purpose="login").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "root"
    with pytest.raises(InvalidToken, match="signature does not verify"):
        tokens.verify(f"{header}.{_segment(claims)}.{signature}", purpose="login")


def test_an_expired_token_is_refused() -> None:
    tokens, holder = _tokens()
    token = tokens.issue("ada", purpose="login")
    holder.time = NOW + 600 + 60
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token, purpose="login")


def test_a_token_of_another_type_signed_by_the_same_ring_is_refused() -> None:
    tokens, holder = _tokens()
    token = holder.ring.sign(_forge_claims(tokens), typ="at+jwt")
    with pytest.raises(InvalidToken, match="typ header"):
        tokens.verify(token, purpose="login")


def test_a_token_for_another_audience_signed_by_the_same_ring_is_refused() -> None:
    tokens, holder = _tokens()
    token = holder.ring.sign({**_forge_claims(tokens), "aud": ISSUER}, typ=SESSION_JWT_TYPE)
    with pytest.raises(InvalidToken, match="audience"):
        tokens.verify(token, purpose="login")


def test_a_token_signed_by_a_retired_key_verifies_until_the_key_is_pruned() -> None:
    tokens, holder = _tokens()
    old_kid = holder.ring.active.kid
    token = tokens.issue("ada", purpose="login")
    holder.ring = holder.ring.rotate(NOW + 1)
    assert holder.ring.active.kid != old_kid
    assert tokens.verify(token, purpose="login")["sub"] == "ada"
    new_token = tokens.issue("grace", purpose="login")
    holder.ring = holder.ring.prune(before=NOW + 2)
    with pytest.raises(UnknownSigningKey):
        tokens.verify(token, purpose="login")
    assert tokens.verify(new_token, purpose="login")["sub"] == "grace"


def test_renewal_comes_past_half_the_lifetime_keeps_the_session_and_stops_at_the_maximum() -> None:
    tokens, holder = _tokens()  # 600 s tokens
    first = tokens.verify(tokens.issue("alice", purpose="session", extra={"sid": "s1"}), purpose="session")
    holder.time = NOW + 299
    assert tokens.renew(first, max_age=3600) is None  # not yet half way
    holder.time = NOW + 300
    renewed = tokens.renew(first, max_age=3600)
    assert renewed is not None
    second = tokens.verify(renewed, purpose="session")
    kept = (second["sub"], second["sid"], second["auth_time"], second["purpose"])
    assert kept == ("alice", "s1", int(NOW), "session")
    assert second["exp"] == int(NOW) + 300 + 600 and second["jti"] != first["jti"]
    # Renewed while in use, but never past an hour after signing in.
    holder.time = NOW + 3000
    last = tokens.renew(second, max_age=3600)
    assert last is not None
    third = tokens.verify(last, purpose="session")
    assert third["auth_time"] == int(NOW) and third["exp"] == int(NOW) + 3600
    holder.time = NOW + 3001
    assert tokens.renew(third, max_age=3600) is None  # a fresh one would outlive the hour
    holder.time = NOW + 3600 + 10  # past the last token's expiry and the verifier's leeway
    with pytest.raises(InvalidToken):
        tokens.verify(last, purpose="session")


def test_a_session_from_before_session_ids_is_named_by_its_first_token_from_its_first_renewal_on() -> None:
    """Its renewals share one id (the first token's jti), so a sign-out and the CSRF token cover them."""
    tokens, holder = _tokens()
    first = tokens.verify(tokens.issue("alice", purpose="session"), purpose="session")
    assert "sid" not in first
    holder.time = NOW + 300
    second = tokens.verify(tokens.renew(first, max_age=3600) or "", purpose="session")
    holder.time = NOW + 600
    third = tokens.verify(tokens.renew(second, max_age=3600) or "", purpose="session")
    assert second["sid"] == third["sid"] == first["jti"]
