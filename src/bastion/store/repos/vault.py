"""The vault's footprint in the store: a canary per master key, the start-up check, and re-wrapping.

A canary is a known value sealed with one master key (in `meta`). At start-up each
canary must open, so a wrong or missing key stops Bastion before it reads or
overwrites anything; a secret sealed with a key that is not configured stops it
too. `rewrap_all` moves every sealed secret to the current key and retires the
canaries of keys nothing uses any more.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from sqlalchemy import delete, select

from bastion.audit.checkpoints import key_owner
from bastion.store.db import Database
from bastion.store.models import AuditCheckpointKey, DownstreamConnect, DownstreamGrant, Meta, Origin, SigningKey
from bastion.store.tenancy import SYSTEM
from bastion.vault.credentials import origin_owner
from bastion.vault.downstream_oauth import grant_owner
from bastion.vault.envelope import MasterKeys, VaultError, is_sealed, kid_of

__all__ = ["check_vault", "rewrap_all", "signing_key_owner", "trusted_signing_keys"]

log = structlog.get_logger(__name__)

_CANARY_PREFIX = "vault_canary:"
_CANARY_OWNER = "purpose=canary"
_CANARY_VALUE = b"bastion vault canary"


def signing_key_owner(kid: str) -> str:
    return f"purpose=signing-key;kid={kid}"


def trusted_signing_keys(rows: Sequence[SigningKey], *, sealing: bool) -> list[SigningKey]:
    """The stored signing keys Bastion may sign and verify with. Without a master key (`sealing`
    false), all: nothing is sealed. With one, the sealed keys, and keys in the clear only while none
    is sealed yet (the store as it was before the vault, until `bastion keys rewrap` seals them).
    A key in the clear beside sealed ones can only have been written past Bastion (by someone who
    could then sign tokens, sessions and audit checkpoints Bastion takes for its own): left out,
    and said so."""
    if not sealing or not any(is_sealed(row.private_jwk) for row in rows):
        return list(rows)
    for row in rows:
        if not is_sealed(row.private_jwk):
            log.error("signing_key_in_clear_not_trusted", kid=row.kid)
    return [row for row in rows if is_sealed(row.private_jwk)]


async def check_vault(db: Database, keys: MasterKeys | None) -> None:
    """Refuse (VaultError) unless every sealed secret in the store can be opened with `keys`."""
    async with db.session(SYSTEM) as session:
        canaries = {
            row.key.removeprefix(_CANARY_PREFIX): row.value
            for row in await session.scalars(select(Meta).where(Meta.key.startswith(_CANARY_PREFIX)))
        }
        stored = [
            *await session.scalars(select(Origin.credential)),
            *await session.scalars(select(SigningKey.private_jwk)),
            *await session.scalars(select(DownstreamGrant.sealed)),
            *await session.scalars(select(AuditCheckpointKey.public_jwk)),
        ]
    sealed = [value for value in stored if value is not None and is_sealed(value)]
    used = {kid_of(value) for value in sealed} | set(canaries)
    if keys is None:
        if used:
            raise VaultError(
                f"the store holds secrets sealed with master key(s) {', '.join(sorted(used))}: "
                "set BASTION_MASTER_KEY or BASTION_MASTER_KEY_FILE to the keys they were sealed with"
            )
        return
    missing = used - set(keys.kids)
    if missing:
        raise VaultError(f"master key(s) {', '.join(sorted(missing))} hold sealed secrets but are not configured")
    for kid, value in canaries.items():
        if keys.open(value, _CANARY_OWNER) != _CANARY_VALUE:  # raises VaultError on a wrong key
            raise VaultError(f"master key {kid!r} is not the key the store was sealed with")
    if keys.current.kid not in canaries:
        async with db.session(SYSTEM) as session:
            session.add(Meta(key=_CANARY_PREFIX + keys.current.kid, value=keys.seal(_CANARY_VALUE, _CANARY_OWNER)))


async def rewrap_all(db: Database, keys: MasterKeys) -> int:
    """Re-wrap every sealed secret under the current key (sealing plaintext signing keys too);
    returns how many secrets were rewritten. One transaction: all or nothing.

    Every row it rewrites is locked as it is read (PostgreSQL; SQLite serializes writers by
    itself): it runs beside live servers, and a credential replaced, or a person's refresh token
    rotated, meanwhile would otherwise be overwritten with the old one. Such a write waits for the
    rewrap instead, and then writes over it."""
    await check_vault(db, keys)
    changed = 0
    async with db.session(SYSTEM) as session:
        for origin in await session.scalars(select(Origin).where(Origin.credential.is_not(None)).with_for_update()):
            if origin.credential is None or not is_sealed(origin.credential):
                continue  # nothing sealed (a `jwt` origin's minting configuration)
            owner = origin_owner(origin.tenant_id, origin.id)
            rewrapped = keys.rewrap(origin.credential, owner)
            changed += rewrapped != origin.credential
            origin.credential = rewrapped
        # Keys in the clear are sealed only while none is sealed (see `trusted_signing_keys`): one planted
        # beside sealed keys stays out of the ring, never laundered into it.
        for key in trusted_signing_keys(
            (await session.scalars(select(SigningKey).with_for_update())).all(), sealing=True
        ):
            owner = signing_key_owner(key.kid)
            if is_sealed(key.private_jwk):
                rewrapped = keys.rewrap(key.private_jwk, owner)
            else:
                rewrapped = keys.seal(key.private_jwk.encode(), owner)
            changed += rewrapped != key.private_jwk
            key.private_jwk = rewrapped
        for grant in await session.scalars(select(DownstreamGrant).with_for_update()):
            owner = grant_owner(grant.tenant_id, grant.user_id, grant.origin_id, grant.issuer, grant.resource)
            rewrapped = keys.rewrap(grant.sealed, owner)
            changed += rewrapped != grant.sealed
            grant.sealed = rewrapped
        for checkpoint_key in await session.scalars(select(AuditCheckpointKey).with_for_update()):
            if not is_sealed(checkpoint_key.public_jwk):
                continue  # kept in the clear by a Bastion without master keys: sealing it now adds no trust
            rewrapped = keys.rewrap(checkpoint_key.public_jwk, key_owner(checkpoint_key.kid))
            changed += rewrapped != checkpoint_key.public_jwk
            checkpoint_key.public_jwk = rewrapped
        # Connection attempts live ten minutes: those in flight start again rather than move.
        await session.execute(delete(DownstreamConnect))
        await session.execute(
            delete(Meta).where(Meta.key.startswith(_CANARY_PREFIX), Meta.key != _CANARY_PREFIX + keys.current.kid)
        )
    return changed
