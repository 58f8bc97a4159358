"""Throwaway PostgreSQL databases for tests: created (optionally migrated) and dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.store.db import Database

__all__ = ["admin_sql", "migrate", "scratch_database"]


async def admin_sql(url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE cannot run inside one)."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def migrate(url: str) -> None:
    database = Database(url)
    try:
        await database.migrate()
    finally:
        await database.close()


@asynccontextmanager
async def scratch_database(base_url: str, *, migrated: bool, prefix: str = "bastion_test") -> AsyncIterator[str]:
    """A database of the caller's own on the server of `base_url`, dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    await admin_sql(base_url, f'CREATE DATABASE "{name}"')
    try:
        url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
        if migrated:
            await migrate(url)
        yield url
    finally:
        with anyio.CancelScope(shield=True):
            await admin_sql(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
