"""Fixtures of the checkpoint, retention and tail tests: a store on each backend (sealing with a
master key), a tenant of each test's own, a key ring.

PostgreSQL: one scratch database per test module (created, migrated, dropped at the end), so these
tests never touch rows another module or another run uses; each test has its own tenant in it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from bastion.store.db import Database
from bastion.store.models import Tenant
from bastion.store.tenancy import SYSTEM
from bastion.vault.envelope import MasterKey
from bastion.vault.keys import encode_key, keys_from_env
from tests.audit.chains import Keys
from tests.harness import postgres_url
from tests.pg import scratch_database


@pytest.fixture(scope="module")
def pg_module_url() -> Iterator[str]:
    base = postgres_url()
    if base is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is required under CI but is not reachable")
        pytest.skip("PostgreSQL is not reachable on this machine (set BASTION_TEST_POSTGRES_URL)")
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(scratch_database(base, migrated=True, prefix="bastion_audit")) as url:
            yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/bastion.db"
    return str(request.getfixturevalue("pg_module_url"))


@pytest.fixture
def master_key() -> str:
    """BASTION_MASTER_KEY for a subprocess: the same key the test's `store` seals with."""
    key = MasterKey.generate()
    return f"{key.kid}:{encode_key(key.key)}"


@pytest.fixture
async def store(store_url: str, master_key: str) -> AsyncIterator[Database]:
    db = Database(store_url)
    await db.migrate()  # at once on the migrated scratch database
    db.vault = keys_from_env(master_key)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def tenant(store: Database) -> str:
    tenant_id = uuid.uuid4().hex
    async with store.session(SYSTEM) as session:
        session.add(Tenant(id=tenant_id, slug=f"audit-{tenant_id[:12]}", name="Audit test"))
    return tenant_id


@pytest.fixture
def keys() -> Keys:
    return Keys()
