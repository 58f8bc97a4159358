"""Bastion's signing keys: loaded at start, created on first start, saved on rotation.

With a vault master key configured (`db.vault`), private keys are stored sealed, bound
to their key id; keys stored before the vault existed are sealed by `bastion keys rewrap`.
Once any key is sealed, a key in the clear is not trusted (`trusted_signing_keys`): only someone
writing to the database past Bastion can have put it there, and with it they could sign
tokens, sessions and audit checkpoints that Bastion would take for its own.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.oauth.keys import KeyRing
from bastion.store.db import Database, bump_epoch
from bastion.store.models import SigningKey
from bastion.store.repos.vault import signing_key_owner, trusted_signing_keys
from bastion.store.tenancy import SYSTEM
from bastion.vault.envelope import VaultError, is_sealed

__all__ = ["load_keyring", "rotate_keyring", "save_keyring"]


async def load_keyring(db: Database) -> KeyRing:
    async with db.session(SYSTEM) as session:
        rows = trusted_signing_keys((await session.scalars(select(SigningKey))).all(), sealing=db.vault is not None)
        if rows:
            return KeyRing.from_records(
                {
                    "kid": r.kid,
                    "algorithm": r.algorithm,
                    "private_jwk": _open(db, r.kid, r.private_jwk),
                    "created_at": r.created_at,
                    "status": r.status,
                }
                for r in rows
            )
    ring = KeyRing.fresh(time.time())
    await save_keyring(db, ring)
    return ring


async def save_keyring(db: Database, ring: KeyRing) -> None:
    """Replace the stored keys with `ring` (rotation and pruning both end here)."""
    async with db.session(SYSTEM) as session:
        await _replace(session, db, ring)


async def rotate_keyring(db: Database, *, now: float, keep_retired_seconds: float) -> KeyRing:
    """A new active signing key; retired keys stay published until `keep_retired_seconds` after
    they stopped signing, so tokens they signed still verify. Every replica reloads (epoch)."""
    ring = (await load_keyring(db)).rotate(now).prune(now - keep_retired_seconds)
    async with db.session(SYSTEM) as session:
        await _replace(session, db, ring)
        await bump_epoch(session)
    return ring


async def _replace(session: AsyncSession, db: Database, ring: KeyRing) -> None:
    """The stored keys become `ring`'s, private keys sealed when a master key is configured."""
    await session.execute(delete(SigningKey))
    for record in ring.to_records():
        session.add(SigningKey(**{**record, "private_jwk": _seal(db, record["kid"], record["private_jwk"])}))


def _seal(db: Database, kid: str, private_jwk: str) -> str:
    return private_jwk if db.vault is None else db.vault.seal(private_jwk.encode(), signing_key_owner(kid))


def _open(db: Database, kid: str, stored: str) -> str:
    if not is_sealed(stored):
        return stored
    if db.vault is None:
        raise VaultError(f"signing key {kid!r} is sealed and no master key is configured")
    return db.vault.open(stored, signing_key_owner(kid)).decode()
