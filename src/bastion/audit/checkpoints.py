"""Signed checkpoints of the audit chains: when one is due, how it is signed, and how it is checked.

A checkpoint pins a tenant's chain at one record: `(tenant, seq, hash, at_us)`, signed as a compact
JWS with Bastion's active signing key (ES256, typ `bastion-audit-checkpoint+jwt`; RFC 8725 §3.11:
an explicit type keeps it from passing as any other Bastion JWT, and an access token from passing
as a checkpoint). Someone who can write the database but holds no key can recompute every hash of
a chain's tail and move its head, but cannot sign: the first checkpoint after the change no longer
matches its record.

Which public keys a verifier trusts. Signing keys rotate and retired ones are pruned from the key
ring, so checkpoints outlive the keys that signed them. Each key that signs a checkpoint first has
its public JWK stored in `audit_checkpoint_keys`, *sealed with the vault* (AES-GCM, owner
`audit-checkpoint-key:<kid>` as associated data; `bastion.vault.envelope`). Only the holder of a
master key can seal, so a JWK planted in that table by a database writer does not open, a sealed
JWK copied under another kid does not open either, and an opened JWK must still hash to its kid
(RFC 7638 thumbprint). With a master key configured, unsealed rows are never trusted. Without one,
the JWKs are stored in the clear and trusted as they are: the private signing keys then sit in the
same database in the clear too, so a database writer could sign anyway (`bastion audit verify` says
so). Checkpoints are also logged (`audit_checkpoint`), a copy outside the database.

What checkpoints cannot catch alone: records after the newest checkpoint are not signed yet, and a
writer who deletes the newest checkpoints can rewrite what they covered. The verifier reports how
far the newest checkpoint is behind the head; more than `every` records behind means some are gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from bastion.oauth.keys import SIGNING_ALGORITHM, SigningKey
from bastion.vault.envelope import MasterKeys, VaultError, VaultUnavailable, is_sealed

__all__ = [
    "CHECKPOINT_TYP",
    "Checkpoint",
    "CheckpointPolicy",
    "TrustedKeys",
    "check",
    "key_owner",
    "sign",
    "stored_public_key",
    "trusted_keys",
]

CHECKPOINT_TYP = "bastion-audit-checkpoint+jwt"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a checkpoint pins: the chain of `tenant_id` has record `seq` with this `hash`."""

    tenant_id: str
    seq: int
    hash: str
    at_us: int  # when it was made (POSIX microseconds)

    def claims(self) -> dict[str, Any]:
        # RFC 7519 §4.1.6 iat is in seconds; at_us keeps the row's exact time.
        return {"tenant": self.tenant_id, "seq": self.seq, "hash": self.hash, "at_us": self.at_us, "iat": self.iat}

    @property
    def iat(self) -> int:
        return self.at_us // 1_000_000


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """A checkpoint every `every` records of a chain, and after `seconds` when records came since."""

    every: int = 1000
    seconds: float = 60.0

    def pins(
        self, *, last_seq: int, last_at_us: int, first: int, end: int, now_us: int, force: bool = False
    ) -> list[int]:
        """The seqs in `first..end` (a batch just appended) to checkpoint, given the last checkpoint."""
        steps = max(1, -(-(first - last_seq) // self.every))  # the first multiple at or after `first`
        pins = list(range(last_seq + steps * self.every, end + 1, self.every))
        if not pins and end - last_seq >= self.every:  # behind (a chain from before checkpoints)
            pins = [end]
        if not pins and end > last_seq and now_us - last_at_us >= self.seconds * 1_000_000:
            pins = [end]
        if force and end not in pins:
            pins.append(end)
        return pins


def key_owner(kid: str) -> str:
    """The vault owner a checkpoint key's public JWK is sealed for (the AEAD associated data)."""
    return f"audit-checkpoint-key:{kid}"


def sign(key: SigningKey, checkpoint: Checkpoint) -> str:
    return key.sign(checkpoint.claims(), typ=CHECKPOINT_TYP)


def stored_public_key(key: SigningKey, vault: MasterKeys | None) -> str:
    """How `key`'s public JWK is kept: sealed when a master key is configured, else JSON."""
    jwk = orjson.dumps(key.public_jwk(), option=orjson.OPT_SORT_KEYS)
    return jwk.decode() if vault is None else vault.seal(jwk, key_owner(key.kid))


@dataclass(frozen=True, slots=True)
class TrustedKeys:
    """The public keys checkpoints may be signed with, and why any other stored one is not trusted."""

    keys: dict[str, ECKey]
    refused: dict[str, str]
    sealed: bool  # False: no master key, the keys are trusted as stored (see the module docstring)


def trusted_keys(stored: dict[str, str], vault: MasterKeys | None) -> TrustedKeys:
    """Open each stored `kid -> public JWK`; raises VaultUnavailable when the key service is down."""
    keys: dict[str, ECKey] = {}
    refused: dict[str, str] = {}
    for kid, value in stored.items():
        try:
            keys[kid] = _open(kid, value, vault)
        except VaultUnavailable:
            raise
        except (VaultError, JoseError, ValueError, TypeError) as error:
            refused[kid] = str(error) or type(error).__name__
    return TrustedKeys(keys, refused, sealed=vault is not None)


def _open(kid: str, value: str, vault: MasterKeys | None) -> ECKey:
    if vault is None:
        if is_sealed(value):
            raise VaultError("its public key is sealed and no master key is configured")
        raw = value.encode()
    else:
        if not is_sealed(value):
            raise VaultError("its public key is not sealed with the vault (not written by Bastion)")
        raw = vault.open(value, key_owner(kid))
    key = ECKey.import_key(orjson.loads(raw))
    if key.is_private or key.thumbprint() != kid:  # RFC 7638: the kid is the key's thumbprint
        raise ValueError("its public key does not match its kid")
    return key


def check(token: str, checkpoint: Checkpoint, trusted: TrustedKeys) -> str | None:
    """None when `token` is a valid signature, by a trusted key, of exactly `checkpoint`; else why not."""
    try:
        header = jws.extract_compact(token.encode()).headers()
    except (JoseError, ValueError):
        return "its signature is not a well-formed compact JWS"
    if header.get("typ") != CHECKPOINT_TYP or header.get("alg") != SIGNING_ALGORITHM:
        return "its signature is not a checkpoint signature (typ or alg)"  # RFC 8725 §3.1, §3.11
    kid = header.get("kid")
    key = trusted.keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        why = trusted.refused.get(kid) if isinstance(kid, str) else None
        return f"it is signed by key {kid!r}, which is not trusted ({why or 'no such checkpoint key is stored'})"
    try:
        payload = jws.deserialize_compact(token, key, algorithms=[SIGNING_ALGORITHM]).payload
        claims = orjson.loads(payload)
    except (JoseError, ValueError):
        return f"its signature does not verify with key {kid!r}"
    if claims != checkpoint.claims():
        return "its signed claims do not match the stored checkpoint (the checkpoint row was altered)"
    return None
