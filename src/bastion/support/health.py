"""Health as the support bundle reports it: each check ok, failed (with a reason) or skipped.

`/readyz` answers for a running replica; these look from outside, with this machine's
configuration, because a bundle is most wanted when Bastion will not start. So a check never
raises (its failure is the finding), each has a deadline (an unreachable host must not hang
the bundle), and none writes: no migration, no SQLite file created, no master key file made,
and the vault check runs in transactions that are rolled back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

import bastion.store
from bastion.config import Settings
from bastion.observability.redact import redact_text
from bastion.posture import posture_findings
from bastion.store.db import Database
from bastion.store.repos.vault import check_vault

__all__ = ["Check", "collect"]

_MIGRATIONS = Path(bastion.store.__file__).parent / "migrations"
_JOURNAL_FILES = "audit-journal-*.jsonl"  # as bastion.store.repos.audit names them
_REASON_CHARS = 500


@dataclass(frozen=True)
class Check:
    status: Literal["ok", "failed", "skipped"]
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)


async def collect(settings: Settings, *, check_seconds: float = 10.0) -> dict[str, dict[str, Any]]:
    """Every check, by name, as JSON-ready dicts."""
    checks: dict[str, Check] = {}
    db: Database | None = None
    try:
        db = _open(settings.database_url)
    except (ArgumentError, ImportError, OSError) as exc:  # a malformed URL, a missing driver or file
        checks["database"] = _failed(exc)
    else:
        checks["database"] = await _guarded(lambda: _database(db), check_seconds)
    if db is not None and checks["database"].status == "ok":
        checks["schema"] = await _guarded(lambda: _schema(db), check_seconds)
        checks["vault"] = await _guarded(lambda: _vault(settings, db), check_seconds)
    else:
        checks["schema"] = checks["vault"] = Check("skipped", "the database is not reachable")
    if db is not None:
        await db.close()
    redis_url = settings.redis_url
    if redis_url is None:
        checks["redis"] = Check("skipped", "BASTION_REDIS_URL is not set (one process, in-process events)")
    else:
        checks["redis"] = await _guarded(lambda: _redis(redis_url, check_seconds), check_seconds)
    journal = settings.audit_journal_path()
    checks["audit_journal"] = await _guarded(lambda: anyio.to_thread.run_sync(_journal, journal), check_seconds)
    findings = posture_findings(settings)
    checks["posture"] = Check(
        "failed" if findings else "ok", f"{len(findings)} findings", {"findings": [redact_text(f) for f in findings]}
    )
    return {name: asdict(check) for name, check in checks.items()}


def _open(url: str) -> Database:
    """Read-only: `check_vault` records a canary for a new current key; a bundle taken with a
    mistaken key must not leave one behind, or the next start would refuse for want of that key."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        if not Path(parsed.database).exists():  # connecting would create it
            raise FileNotFoundError(f"the SQLite database {parsed.database} does not exist (`bastion migrate`)")
    return Database(url, read_only=True)


async def _guarded(check: Callable[[], Awaitable[Check]], seconds: float) -> Check:
    try:
        with anyio.fail_after(seconds):
            return await check()
    except TimeoutError:
        return Check("failed", f"no answer within {seconds:g} s")
    except Exception as exc:  # the bundle reports any failure: it is wanted most when things are broken
        return _failed(exc)


def _failed(exc: BaseException) -> Check:
    reason = redact_text(f"{type(exc).__name__}: {exc}")
    return Check("failed", reason[:_REASON_CHARS])


async def _database(db: Database) -> Check:
    async with db.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        version = connection.dialect.server_version_info
    facts = {
        "dialect": db.engine.dialect.name,
        "driver": db.engine.dialect.driver,
        "server_version": ".".join(str(part) for part in version) if version else None,
    }
    return Check("ok", "reachable", facts)


async def _schema(db: Database) -> Check:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(_MIGRATIONS))
    head = script.get_current_head()
    async with db.engine.connect() as connection:
        current = await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_heads())
    facts = {"current": list(current), "head": head}
    if list(current) == [head]:
        return Check("ok", "the schema is at this Bastion's newest revision", facts)
    if not current:
        return Check("failed", "no schema: run `bastion migrate`", facts)
    if set(current) - {revision.revision for revision in script.walk_revisions()}:
        return Check("failed", "the schema was migrated by a newer Bastion than this one", facts)
    return Check("failed", "the schema is behind this Bastion's newest revision: run `bastion migrate`", facts)


async def _vault(settings: Settings, db: Database) -> Check:
    key_file = settings.master_key_file
    if key_file is not None and not key_file.exists():  # master_keys() would create it
        return Check("failed", f"the master key file {key_file} does not exist (a start would create one)")
    # A thread: with BASTION_VAULT_ADDR this asks HashiCorp Vault, over the network.
    keys = await anyio.to_thread.run_sync(settings.master_keys, abandon_on_cancel=True)
    await check_vault(db, keys)  # VaultError names what is wrong, never a key
    if keys is None:
        return Check("ok", "no master key configured, and the store holds no sealed secrets")
    facts = {"current": keys.current.kid, "configured": sorted(keys.kids)}
    return Check("ok", "every sealed secret opens with the configured master keys", facts)


async def _redis(url: str, seconds: float) -> Check:
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=seconds, socket_timeout=seconds)
    try:
        await client.ping()
        server = await client.info("server")
    finally:
        await client.aclose()
    return Check("ok", "reachable", {"server_version": server.get("redis_version")})


def _journal(directory: Path) -> Check:
    if not directory.exists():
        return Check("ok", "no journal directory yet", {"directory": str(directory), "files": 0})
    files = sorted(directory.glob(_JOURNAL_FILES))
    stats = [path.stat() for path in files]
    oldest = min((stat.st_mtime for stat in stats), default=None)
    facts = {
        "directory": str(directory),
        "files": len(files),
        "bytes": sum(stat.st_size for stat in stats),
        "oldest": None if oldest is None else datetime.fromtimestamp(oldest, UTC).isoformat(),
    }
    # A running gateway keeps its current file; many or old ones mean the store is not taking records.
    return Check("ok", f"{len(files)} journal files waiting for the store", facts)
