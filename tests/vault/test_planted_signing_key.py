"""A signing key written into the database in the clear, beside Bastion's sealed ones, is never
trusted: not loaded into the ring (so nothing it signs verifies), not sealed by a rewrap, and gone
with the next rotation. Keys stored before the vault existed are still sealed by the rewrap."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from bastion.oauth.keys import KeyRing
from bastion.store.db import Database
from bastion.store.models import SigningKey
from bastion.store.repos.keys import load_keyring, rotate_keyring
from bastion.store.repos.vault import rewrap_all
from bastion.store.tenancy import SYSTEM
from bastion.vault.envelope import MasterKey, MasterKeys, is_sealed

pytestmark = pytest.mark.anyio


async def _store(tmp_path: Path, vault: MasterKeys | None) -> Database:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/bastion.db")
    await db.migrate()
    db.vault = vault
    return db


async def _plant(db: Database) -> str:
    """What a database writer without the master key can do: add a key of their own, in the clear."""
    record = KeyRing.fresh(time.time()).to_records()[0]
    async with db.session(SYSTEM) as session:
        session.add(SigningKey(**record))
    return str(record["kid"])


async def _rows(db: Database) -> dict[str, str]:
    async with db.session(SYSTEM) as session:
        return {row.kid: row.private_jwk for row in await session.scalars(select(SigningKey))}


async def test_a_key_planted_in_the_clear_beside_sealed_ones_is_never_trusted(tmp_path: Path) -> None:
    vault = MasterKeys(MasterKey.generate())
    db = await _store(tmp_path, vault)
    try:
        ours = (await load_keyring(db)).active.kid  # created sealed on first start
        planted = await _plant(db)
        ring = await load_keyring(db)
        assert [key.kid for key in ring.keys] == [ours]
        assert planted not in {key["kid"] for key in ring.jwks()["keys"]}
        await rewrap_all(db, vault)  # does not seal it into the ring
        rows = await _rows(db)
        assert is_sealed(rows[ours]) and not is_sealed(rows[planted])
        rotated = await rotate_keyring(db, now=time.time(), keep_retired_seconds=3600)
        assert planted not in {key.kid for key in rotated.keys}
        assert planted not in await _rows(db)
    finally:
        await db.close()


async def test_keys_stored_before_the_vault_are_trusted_and_sealed_by_the_rewrap(tmp_path: Path) -> None:
    db = await _store(tmp_path, None)
    try:
        before = (await load_keyring(db)).active.kid  # in the clear: no master key yet
        vault = MasterKeys(MasterKey.generate())
        db.vault = vault
        assert [key.kid for key in (await load_keyring(db)).keys] == [before]
        await rewrap_all(db, vault)
        assert is_sealed((await _rows(db))[before])
        assert [key.kid for key in (await load_keyring(db)).keys] == [before]
    finally:
        await db.close()
