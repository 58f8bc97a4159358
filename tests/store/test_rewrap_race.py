"""`bastion keys rewrap` runs beside live servers: a credential replaced while it runs is not
written over with the old one (PostgreSQL; SQLite serializes writers by itself)."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
from sqlalchemy import update

from bastion.store.db import Database
from bastion.store.models import Origin
from bastion.store.repos import origins
from bastion.store.repos.vault import check_vault, rewrap_all
from bastion.store.tenancy import SYSTEM
from bastion.vault.credentials import origin_owner
from bastion.vault.envelope import MasterKey, MasterKeys

pytestmark = pytest.mark.anyio


class _Stalling(MasterKeys):
    """Keys whose first rewrap lets `during` run in another thread first (its own connection),
    then goes on after a pause: the replacement lands, or waits for the rewrap's lock."""

    def __init__(self, key: MasterKey, older: MasterKey, during: threading.Thread) -> None:
        super().__init__(key, [older])
        self._during = during

    def rewrap(self, sealed: str, owner: str) -> str:
        if not self._during.is_alive() and self._during.ident is None:
            self._during.start()
            time.sleep(1.0)  # a replica's write, given time to commit (or to wait on the row's lock)
        return super().rewrap(sealed, owner)


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_credential_replaced_while_rewrap_runs_is_kept(db: Database, backend: str, migrated_url: str) -> None:
    key = MasterKey.generate()
    plain = MasterKeys(key)
    await check_vault(db, plain)
    async with db.session(SYSTEM) as session:
        origin = await origins.create(
            session, name="crm", transport="http", url="https://crm.example/mcp", command=None, timeout_seconds=None
        )
        owner = origin_owner(origin.tenant_id, origin.id)
        origin.credential = plain.seal(b"leaked", owner)
        origin_id = origin.id
    replacement = plain.seal(b"replaced", owner)

    def replace_credential() -> None:
        async def write() -> None:
            other = Database(migrated_url)
            try:
                async with other.session(SYSTEM) as session:
                    await session.execute(update(Origin).where(Origin.id == origin_id).values(credential=replacement))
            finally:
                await other.close()

        anyio.run(write)

    writer = threading.Thread(target=replace_credential)
    rotated = _Stalling(MasterKey.generate(), key, writer)  # `keys rotate` made a new key current
    await rewrap_all(db, rotated)
    writer.join(timeout=30)
    assert not writer.is_alive()
    async with db.session(SYSTEM) as session:
        stored = await session.get(Origin, origin_id)
        assert stored is not None and stored.credential is not None
        assert rotated.open(stored.credential, owner) == b"replaced"
