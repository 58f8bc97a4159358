"""Bastion's signing key ring: generation, rotation, pruning, publication and storage."""

from __future__ import annotations

import json

import pytest
from joserfc import jwt
from joserfc.jwk import thumbprint

from bastion.errors import BastionError
from bastion.oauth.keys import KeyRing

NOW = 1_700_000_000.0
DAY = 86_400.0


def test_a_generated_key_is_a_p256_es256_key_named_by_its_rfc7638_thumbprint() -> None:
    key = KeyRing.generate_key(NOW)
    public = {name: key.private_jwk[name] for name in ("crv", "kty", "x", "y")}
    assert key.algorithm == "ES256"
    assert key.private_jwk["crv"] == "P-256"
    assert key.kid == thumbprint(public)
    assert key.status == "active"
    assert key.created_at == NOW


def test_a_signing_key_repr_never_shows_the_private_jwk() -> None:
    key = KeyRing.generate_key(NOW)
    private_scalar = key.private_jwk["d"]
    assert isinstance(private_scalar, str)
    assert private_scalar not in repr(key)
    assert "private_jwk" not in repr(key)


def test_the_jwks_publishes_only_public_members_with_use_alg_and_kid() -> None:
    ring = KeyRing.fresh(NOW).rotate(NOW + DAY)
    published = ring.jwks()["keys"]
    assert len(published) == 2
    for member in published:
        assert "d" not in member
        assert member["use"] == "sig"
        assert member["alg"] == "ES256"
    assert {member["kid"] for member in published} == {key.kid for key in ring.keys}


def test_rotation_adds_a_new_active_key_and_retires_the_old_one_without_touching_the_original_ring() -> None:
    first = KeyRing.fresh(NOW)
    rotated = first.rotate(NOW + DAY)
    assert first.active.status == "active"
    assert len(first.keys) == 1
    assert rotated.active.created_at == NOW + DAY
    assert rotated.active.kid != first.active.kid
    assert [key.status for key in rotated.keys] == ["retired", "active"]


def test_a_ring_without_an_active_key_cannot_sign() -> None:
    with pytest.raises(BastionError, match="no active signing key"):
        KeyRing().sign({"sub": "ada"}, typ="JWT")


def test_sign_uses_the_active_key_and_puts_kid_and_typ_in_the_header() -> None:
    ring = KeyRing.fresh(NOW).rotate(NOW + DAY)
    token = ring.sign({"sub": "ada"}, typ="example+jwt")
    decoded = jwt.decode(token, ring.key_set(), algorithms=["ES256"])
    assert decoded.header == {"alg": "ES256", "kid": ring.active.kid, "typ": "example+jwt"}
    assert decoded.claims == {"sub": "ada"}


def test_the_verification_key_set_holds_no_private_key() -> None:
    ring = KeyRing.fresh(NOW).rotate(NOW + DAY)
    assert all(not key.is_private for key in ring.key_set())


def test_prune_drops_retired_keys_that_stopped_signing_before_the_cutoff_and_keeps_the_active_one() -> None:
    ring = KeyRing.fresh(NOW).rotate(NOW + DAY).rotate(NOW + 2 * DAY)
    oldest, middle, newest = ring.keys
    pruned = ring.prune(before=NOW + DAY + 1)
    assert [key.kid for key in pruned.keys] == [middle.kid, newest.kid]
    assert [key.kid for key in ring.prune(before=NOW + 10 * DAY).keys] == [newest.kid]
    assert oldest.kid not in {key.kid for key in pruned.keys}


def test_prune_measures_a_retired_key_from_its_retirement_not_its_creation() -> None:
    ring = KeyRing.fresh(NOW).rotate(NOW + 30 * DAY)
    # Created a month ago but retired only now: tokens it signed a moment ago are still live.
    assert len(ring.prune(before=NOW + 30 * DAY - 60).keys) == 2


def test_records_round_trip_and_store_the_private_jwk_as_json_text() -> None:
    ring = KeyRing.fresh(NOW).rotate(NOW + DAY)
    records = ring.to_records()
    assert [set(record) for record in records] == [{"kid", "algorithm", "private_jwk", "created_at", "status"}] * 2
    assert json.loads(records[0]["private_jwk"]) == ring.keys[0].private_jwk
    restored = KeyRing.from_records(records)
    assert restored == ring
    token = restored.sign({"sub": "ada"}, typ="JWT")
    assert jwt.decode(token, ring.key_set(), algorithms=["ES256"]).claims == {"sub": "ada"}


def test_a_record_whose_kid_does_not_match_its_key_is_refused() -> None:
    record = KeyRing.fresh(NOW).to_records()[0]
    record["kid"] = KeyRing.generate_key(NOW).kid
    with pytest.raises(BastionError, match="does not match its kid"):
        KeyRing.from_records([record])


def test_a_record_holding_only_a_public_key_is_refused() -> None:
    ring = KeyRing.fresh(NOW)
    record = ring.to_records()[0]
    record["private_jwk"] = json.dumps(ring.jwks()["keys"][0])
    with pytest.raises(BastionError, match="lacks its private part"):
        KeyRing.from_records([record])


@pytest.mark.parametrize(
    ("field", "value"),
    [("algorithm", "HS256"), ("status", "compromised"), ("private_jwk", "{not json"), ("created_at", "yesterday")],
)
def test_a_corrupt_record_is_refused(field: str, value: str) -> None:
    record = KeyRing.fresh(NOW).to_records()[0]
    record[field] = value
    with pytest.raises(BastionError, match="stored signing key"):
        KeyRing.from_records([record])
