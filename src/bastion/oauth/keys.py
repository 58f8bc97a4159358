"""Bastion's own signing keys: an immutable ring of EC P-256 keys that rotate.

The newest active key signs; retired keys stay published in the JWKS so that
tokens they signed keep verifying until those tokens expire, then `prune`
drops them. Every change returns a new `KeyRing`, so a verifier holding a ring
never sees it change under it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal, cast

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import DictKey, ECKey, KeySet

from bastion.errors import BastionError

__all__ = ["SIGNING_ALGORITHM", "KeyRing", "SigningKey"]

SIGNING_ALGORITHM: Literal["ES256"] = "ES256"

KeyStatus = Literal["active", "retired"]
_STATUSES: frozenset[str] = frozenset({"active", "retired"})


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: Literal["ES256"]
    # The private JWK must never reach a log line, hence repr=False; the kid
    # (its RFC 7638 thumbprint) identifies the key for comparisons instead.
    private_jwk: DictKey = field(repr=False, compare=False, hash=False)
    created_at: float
    status: KeyStatus

    @cached_property
    def _private(self) -> ECKey:
        return ECKey.import_key(self.private_jwk)

    def public_jwk(self) -> DictKey:
        # RFC 7517 §4.2/§4.4/§4.5: publish use, alg and kid so verifiers can pick the key.
        return self._private.as_dict(private=False, use="sig", alg=self.algorithm, kid=self.kid)

    def sign(self, claims: dict[str, Any], *, typ: str) -> str:
        # RFC 7515 §4.1.4 kid names the key; RFC 8725 §3.11 explicit typ stops cross-JWT confusion.
        header = {"alg": self.algorithm, "kid": self.kid, "typ": typ}
        return jwt.encode(header, dict(claims), self._private, algorithms=[self.algorithm])


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[SigningKey, ...] = ()

    @staticmethod
    def generate_key(now: float) -> SigningKey:
        private = ECKey.generate_key("P-256", private=True)
        return SigningKey(
            kid=private.thumbprint(),  # RFC 7638: the kid is derived from the key, never chosen
            algorithm=SIGNING_ALGORITHM,
            private_jwk=private.as_dict(private=True),
            created_at=now,
            status="active",
        )

    @classmethod
    def fresh(cls, now: float) -> KeyRing:
        """A ring holding one new active key: what a first start needs."""
        return cls((cls.generate_key(now),))

    @property
    def active(self) -> SigningKey:
        candidates = [key for key in self.keys if key.status == "active"]
        if not candidates:
            raise BastionError("The key ring has no active signing key; rotate it to create one.")
        return max(candidates, key=lambda key: key.created_at)

    def rotate(self, now: float) -> KeyRing:
        retired = tuple(replace(key, status="retired") if key.status == "active" else key for key in self.keys)
        return KeyRing((*retired, self.generate_key(now)))

    def prune(self, before: float) -> KeyRing:
        """Drop retired keys that stopped signing before `before`.

        A key stops signing when the next key is created, so that moment (not
        the key's own creation) is what the cutoff is compared with: a key made
        long ago but retired a minute ago may still have live tokens out there.
        """
        return KeyRing(tuple(key for key in self.keys if not self._retired_before(key, before)))

    def _retired_before(self, key: SigningKey, before: float) -> bool:
        if key.status != "retired":
            return False
        successors = [other.created_at for other in self.keys if other.created_at > key.created_at]
        retired_at = min(successors, default=key.created_at)
        return retired_at < before

    def jwks(self) -> dict[str, Any]:
        # RFC 7517 §5: the published set holds public members only.
        return {"keys": [key.public_jwk() for key in self.keys]}

    def sign(self, claims: dict[str, Any], *, typ: str) -> str:
        return self.active.sign(claims, typ=typ)

    def key_set(self) -> KeySet:
        """Public keys only, for `bastion.oauth.jwt.verify_jwt`."""
        return KeySet([ECKey.import_key(key.public_jwk()) for key in self.keys])

    def to_records(self) -> list[dict[str, Any]]:
        # The private JWK is stored in the clear until the vault (a later issue) wraps it.
        return [
            {
                "kid": key.kid,
                "algorithm": key.algorithm,
                "private_jwk": json.dumps(key.private_jwk, sort_keys=True),
                "created_at": key.created_at,
                "status": key.status,
            }
            for key in self.keys
        ]

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]]) -> KeyRing:
        return cls(tuple(_key_from_record(record) for record in records))


def _key_from_record(record: dict[str, Any]) -> SigningKey:
    if record.get("algorithm") != SIGNING_ALGORITHM or record.get("status") not in _STATUSES:
        raise BastionError("A stored signing key has an unknown algorithm or status.")
    try:
        private_jwk: DictKey = json.loads(record["private_jwk"])
        private = ECKey.import_key(private_jwk)
        created_at = float(record["created_at"])
    except (JoseError, ValueError, KeyError, TypeError) as error:
        raise BastionError("A stored signing key is not a readable EC private JWK.") from error
    # RFC 7638: re-derive the kid so a row edited by hand cannot sign under another key's name.
    if not private.is_private or private.thumbprint() != record.get("kid"):
        raise BastionError("A stored signing key does not match its kid or lacks its private part.")
    return SigningKey(
        kid=private.thumbprint(),
        algorithm=SIGNING_ALGORITHM,
        private_jwk=private_jwk,
        created_at=created_at,
        status=cast(KeyStatus, record["status"]),
    )
