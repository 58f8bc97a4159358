"""Envelope encryption (AES-256-GCM, `cryptography`): a fresh data key per secret, wrapped by a master key.

A sealed secret is one string, `v1.<kid>.<wrapped data key>.<ciphertext>` (base64url):
the data key encrypts the secret, the master key `kid` encrypts the data key. Both
encryptions authenticate the secret's owner (tenant, origin, user, purpose) as
associated data, so a ciphertext copied into another row, or a wrapped key
swapped between secrets, fails to open. Re-wrapping under a newer master key
rewrites only the wrapped data key; the ciphertext stays.

Hand-written on purpose, and small: `cryptography` supplies AES-GCM; the envelope
layout (which key, which nonce, what is authenticated) is Bastion's own format.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["PREFIX", "KeyWrapper", "MasterKey", "MasterKeys", "VaultError", "VaultUnavailable", "is_sealed", "kid_of"]

PREFIX = "v1."
_NONCE = 12
_KEY_BYTES = 32


class VaultError(Exception):
    """A secret cannot be sealed or opened. The message names the key id, never key material."""


class VaultUnavailable(VaultError):
    """The key service (HashiCorp Vault) could not be asked: nothing is known about the secret."""


class KeyWrapper(Protocol):
    """A master key: wraps and unwraps data keys. Local (`MasterKey`), or held by a key service
    such as HashiCorp Vault's transit engine (`bastion.vault.transit`), where it never leaves."""

    @property
    def kid(self) -> str: ...

    def wrap(self, data_key: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """The data key; raises VaultError when it does not open (wrong key, other owner)."""
        ...


@dataclass(frozen=True, slots=True)
class MasterKey:
    kid: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != _KEY_BYTES:
            raise VaultError(f"master key {self.kid!r} must be 32 bytes (256 bits), not {len(self.key)}")
        if not self.kid or "." in self.kid or len(self.kid) > 64:
            raise VaultError("a master key id is 1-64 characters without '.'")

    @classmethod
    def generate(cls, kid: str | None = None) -> MasterKey:
        key = os.urandom(_KEY_BYTES)
        return cls(kid or "k" + hashlib.sha256(key).hexdigest()[:12], key)

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self.key).encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        try:
            return AESGCM(self.key).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], aad)
        except (InvalidTag, ValueError):
            raise VaultError(
                f"master key {self.kid!r} does not open this secret: a wrong key, or a secret moved from another owner"
            ) from None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(owner: str, kid: str | None = None) -> bytes:
    return f"bastion-vault-v1|{kid or ''}|{owner}".encode()


def is_sealed(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX)


def kid_of(sealed: str) -> str:
    parts = sealed.split(".")
    if len(parts) != 4 or parts[0] != "v1":
        raise VaultError("not a sealed secret")
    return parts[1]


class MasterKeys:
    """The configured master keys: one current (new seals use it), older ones still open."""

    def __init__(self, current: KeyWrapper, others: Iterable[KeyWrapper] = ()) -> None:
        self.current = current
        self._keys: dict[str, KeyWrapper] = {k.kid: k for k in (*others, current)}

    @property
    def kids(self) -> Mapping[str, KeyWrapper]:
        return self._keys

    @property
    def remote(self) -> bool:
        """Some key is held by a key service: opening a secret may wait on the network."""
        return any(getattr(key, "remote", False) for key in self._keys.values())

    def seal(self, plaintext: bytes, owner: str) -> str:
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        ciphertext = nonce + AESGCM(data_key).encrypt(nonce, plaintext, _aad(owner))
        return f"{PREFIX}{self.current.kid}.{self._wrap(data_key, owner)}.{_b64(ciphertext)}"

    def open(self, sealed: str, owner: str) -> bytes:
        kid = kid_of(sealed)
        _, _, wrapped, ciphertext = sealed.split(".")
        data_key = self._unwrap(kid, wrapped, owner)
        raw = _unb64(ciphertext)
        try:
            return AESGCM(data_key).decrypt(raw[:_NONCE], raw[_NONCE:], _aad(owner))
        except (InvalidTag, ValueError):
            raise VaultError(f"a secret sealed with master key {kid!r} does not open for this owner") from None

    def rewrap(self, sealed: str, owner: str) -> str:
        """The same secret with its data key wrapped by the current master key."""
        kid = kid_of(sealed)
        # A key service that rotates versions under one key id (Vault's transit) is asked every
        # time: a data key wrapped by an older version must move to the newest, or trimming the
        # old versions at Vault would leave it unreadable.
        if kid == self.current.kid and not getattr(self.current, "rotates_underneath", False):
            return sealed
        _, _, wrapped, ciphertext = sealed.split(".")
        data_key = self._unwrap(kid, wrapped, owner)
        return f"{PREFIX}{self.current.kid}.{self._wrap(data_key, owner)}.{ciphertext}"

    def _wrap(self, data_key: bytes, owner: str) -> str:
        return _b64(self.current.wrap(data_key, _aad(owner, self.current.kid)))

    def _unwrap(self, kid: str, wrapped: str, owner: str) -> bytes:
        master = self._keys.get(kid)
        if master is None:
            raise VaultError(f"master key {kid!r} is not configured (BASTION_MASTER_KEY / BASTION_MASTER_KEY_FILE)")
        return master.unwrap(_unb64(wrapped), _aad(owner, kid))
