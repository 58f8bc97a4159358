"""Store fixtures: a clean, migrated database per test on SQLite and on PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from bastion.store.db import Database
from bastion.store.models import Base
from tests.harness import postgres_url
from tests.pg import admin_sql, migrate, scratch_database

# --- fixtures: a clean database per test, on each backend -------------------------------------
#
# SQLite: each test gets a copy of a database file migrated once per run. PostgreSQL: one database
# per run (created, migrated, dropped at the end), emptied before each test; CREATE DATABASE per
# test would cost a quarter of a second each. The tests of `migrate` itself use empty databases.

# Every table but the epoch's single row: derived from the models so a new table cannot be missed.
_DATA_TABLES = tuple(table.name for table in Base.metadata.sorted_tables if table.name != "state_epoch")


@contextmanager
def _pg_database(base: str, *, migrated: bool) -> Iterator[str]:
    """A synchronous face on `scratch_database`, for session-scoped and sync fixtures."""
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(scratch_database(base, migrated=migrated)) as url:
            yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "bastion.db"
    anyio.run(migrate, f"sqlite+aiosqlite:///{path}")
    assert not path.with_name("bastion.db-wal").exists()  # closed cleanly: the file is the whole database
    return path


@pytest.fixture(scope="session")
def pg_run_database() -> Iterator[str]:
    # Requested only after the function-scoped `pg_url` fixture found PostgreSQL reachable.
    base = postgres_url()
    assert base is not None
    with _pg_database(base, migrated=True) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/new/bastion.db"  # the directory does not exist yet
        return
    with _pg_database(request.getfixturevalue("pg_url"), migrated=False) as url:
        yield url


@pytest.fixture
def migrated_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        path = tmp_path / "bastion.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    request.getfixturevalue("pg_url")  # skips (or fails under CI) without PostgreSQL
    url = str(request.getfixturevalue("pg_run_database"))
    anyio.run(
        admin_sql,
        url,
        f"TRUNCATE {', '.join(_DATA_TABLES)}",
        "UPDATE state_epoch SET value = 0",
        # The one row the migrations seed besides the epoch: the default tenant.
        "INSERT INTO tenants (id, slug, name, created_at) VALUES ('default', 'default', 'Default', now())",
    )
    return url


@pytest.fixture
async def fresh_db(empty_url: str, anyio_backend: str) -> AsyncIterator[Database]:
    database = Database(empty_url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def db(migrated_url: str, anyio_backend: str) -> AsyncIterator[Database]:
    database = Database(migrated_url)
    try:
        yield database
    finally:
        await database.close()
