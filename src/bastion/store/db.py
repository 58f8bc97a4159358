"""The database handle: engine, sessions, migrations and the change epoch."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import structlog
from sqlalchemy import event, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from bastion.errors import BadRequest
from bastion.store import tenancy
from bastion.store.models import StateEpoch
from bastion.store.tenancy import Tenancy
from bastion.vault.envelope import MasterKeys

__all__ = ["Database"]

log = structlog.get_logger(__name__)

_CHARACTER_NOT_IN_REPERTOIRE = "22021"  # PostgreSQL's SQLSTATE for a NUL in text (or invalid UTF-8)

_MIGRATIONS = Path(__file__).parent / "migrations"


def _private_file(path: Path) -> None:
    """The SQLite file, and a directory made for it, readable by Bastion's user alone, whatever the
    umask: the database holds the MCP session key and, without a master key, the OAuth signing
    keys in the clear (a 0644 file let any local account forge tokens). SQLite gives its journal
    files the database file's permissions. An existing file of Bastion's user that anyone may read
    loses those bits (its group's, an operator's choice for backups say, stay); one of another user
    is only warned about."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        found = path.stat()
        mode = stat.S_IMODE(found.st_mode)
        if not mode & 0o007:
            return
        if found.st_uid == os.geteuid():
            path.chmod(mode & ~0o007)
        else:
            log.warning("database_file_readable_by_others", path=str(path), mode=oct(mode))


class Database:
    def __init__(self, url: str, *, echo: bool = False, read_only: bool = False) -> None:
        """`read_only`: every unit of work rolls back instead of committing (the support bundle's
        checks look without leaving anything behind)."""
        self.url = url
        self.read_only = read_only
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database and parsed.database != ":memory:" and not read_only:
            _private_file(Path(parsed.database))
        self.engine: AsyncEngine = create_async_engine(
            url,
            echo=echo,
            pool_pre_ping=not self.is_sqlite,
            # JSON columns (audit details, policies, item definitions) are written through orjson:
            # the standard library's encoder was 0.7 % of Bastion's busy time under load, in the
            # audit batches. Read back with the standard library, which keeps big integers exact.
            json_serializer=_json_text,
        )
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        # The vault's master keys, when configured (Services sets them): repositories that store
        # secrets seal and open them with these.
        self.vault: MasterKeys | None = None
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False, sync_session_class=_ScopedSession)

    @asynccontextmanager
    async def session(self, scope: Tenancy) -> AsyncIterator[AsyncSession]:
        """A unit of work in `scope` (one tenant, or `SYSTEM`): commits on success, rolls back on any error.

        A value PostgreSQL's text cannot hold (a NUL, U+0000, from a request) is the caller's bad
        input, answered as such (BadRequest) once everything is rolled back, not a server error."""
        try:
            async with self._sessions(info={tenancy.INFO_KEY: scope}) as session, session.begin() as transaction:
                yield session
                if self.read_only:
                    await transaction.rollback()
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _CHARACTER_NOT_IN_REPERTOIRE:
                raise BadRequest("the request holds a NUL character (U+0000), which Bastion does not store") from None
            raise

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from alembic import command

        async with self.engine.begin() as conn:
            await conn.run_sync(lambda sync_conn: command.upgrade(_alembic_config(sync_conn), "head"))

    async def read_epoch(self) -> int:
        async with self._sessions(info={tenancy.INFO_KEY: tenancy.SYSTEM}) as session:
            value = await session.scalar(select(StateEpoch.value).where(StateEpoch.id == 1))
            return int(value or 0)

    async def close(self) -> None:
        await self.engine.dispose()


class _ScopedSession(Session):
    """The sync session behind every AsyncSession here; carries the tenancy hooks."""


tenancy.install(_ScopedSession)


async def bump_epoch(session: AsyncSession) -> None:
    """Mark the store as changed, inside the caller's transaction."""
    await session.execute(update(StateEpoch).where(StateEpoch.id == 1).values(value=StateEpoch.value + 1))


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # what orjson does not take (an integer beyond 64 bits in an origin's schema)
        return json.dumps(value)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
