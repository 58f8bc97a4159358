"""health.json: each check reports ok, failed or skipped, never raises, and changes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import SecretStr

from bastion.config import Settings
from bastion.store.db import Database
from bastion.store.repos.vault import check_vault
from bastion.support.health import collect
from bastion.vault.envelope import MasterKey
from bastion.vault.keys import encode_key, keys_from_env
from tests.harness import free_port, schema_head

pytestmark = pytest.mark.anyio


def _key(kid: str) -> str:
    return f"{kid}:{encode_key(MasterKey.generate().key)}"


async def _migrated(path: Path) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    db = Database(url)
    await db.migrate()
    await db.close()
    return url


def _entries(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


def _meta_keys(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT key FROM meta ORDER BY key")]


async def test_a_healthy_store_passes_and_the_vault_check_leaves_no_canary_behind(tmp_path: Path) -> None:
    url = await _migrated(tmp_path / "bastion.db")
    health = await collect(Settings(database_url=url, master_key=SecretStr(_key("k1"))))
    assert health["database"]["status"] == "ok" and health["database"]["facts"]["dialect"] == "sqlite"
    assert health["schema"] == {
        "status": "ok",
        "detail": "the schema is at this Bastion's newest revision",
        "facts": {"current": [schema_head()], "head": schema_head()},
    }
    assert health["vault"]["status"] == "ok" and health["vault"]["facts"]["current"] == "k1"
    assert health["redis"]["status"] == "skipped"
    # A start records a canary for a new key; the bundle must not (a wrong key's would stop the next start).
    assert _meta_keys(tmp_path / "bastion.db") == []


async def test_a_store_sealed_with_another_master_key_fails_the_vault_check(tmp_path: Path) -> None:
    url = await _migrated(tmp_path / "bastion.db")
    db = Database(url)
    await check_vault(db, keys_from_env(_key("old")))  # as a start with that key does
    await db.close()
    health = await collect(Settings(database_url=url, master_key=SecretStr(_key("new"))))
    assert health["vault"]["status"] == "failed"
    assert "old" in health["vault"]["detail"] and "not configured" in health["vault"]["detail"]


async def test_a_missing_sqlite_file_and_master_key_file_are_reported_not_created(tmp_path: Path) -> None:
    database, key_file = tmp_path / "var" / "bastion.db", tmp_path / "keys" / "master.json"
    health = await collect(Settings(database_url=f"sqlite+aiosqlite:///{database}", master_key_file=key_file))
    assert health["database"]["status"] == "failed" and "does not exist" in health["database"]["detail"]
    assert health["schema"]["status"] == health["vault"]["status"] == "skipped"
    assert _entries(tmp_path) == []


async def test_an_unreachable_database_and_redis_fail_with_a_reason_and_no_password() -> None:
    url = f"postgresql+asyncpg://bastion:pg-password-1@127.0.0.1:{free_port()}/bastion"
    redis_url = f"redis://:redis-password-2@127.0.0.1:{free_port()}/0"
    health = await collect(Settings(database_url=url, redis_url=redis_url), check_seconds=5)
    assert health["database"]["status"] == "failed" and "refused" in health["database"]["detail"].lower()
    assert health["redis"]["status"] == "failed"
    assert health["schema"]["status"] == "skipped"
    assert "password-" not in repr(health)


def _journal(directory: Path, names: list[str]) -> Path:
    directory.mkdir()
    for name in names:
        (directory / name).write_text("{}\n")
    (directory / "unrelated.txt").write_text("")
    return directory


async def test_waiting_audit_journal_files_are_counted_and_posture_findings_listed(tmp_path: Path) -> None:
    url = await _migrated(tmp_path / "bastion.db")
    journal = _journal(tmp_path / "journal", ["audit-journal-1-000000.jsonl", "audit-journal-2-000000.jsonl"])
    settings = Settings(database_url=url, audit_journal_dir=journal, host="0.0.0.0", admin_password="admin")
    health = await collect(settings)
    assert health["audit_journal"]["facts"]["files"] == 2
    assert health["audit_journal"]["facts"]["bytes"] == 6
    assert health["posture"]["status"] == "failed"
    assert len(health["posture"]["facts"]["findings"]) == 2


def _set_revision(path: Path, revision: str) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))


@pytest.mark.parametrize(
    ("revision", "detail"),
    [
        ("0001", "the schema is behind this Bastion's newest revision: run `bastion migrate`"),
        ("9999_from_the_future", "the schema was migrated by a newer Bastion than this one"),
    ],
)
async def test_a_schema_at_another_revision_fails_and_says_which_way(
    tmp_path: Path, revision: str, detail: str
) -> None:
    url = await _migrated(tmp_path / "bastion.db")
    _set_revision(tmp_path / "bastion.db", revision)
    health = await collect(Settings(database_url=url))
    assert health["schema"] == {
        "status": "failed",
        "detail": detail,
        "facts": {"current": [revision], "head": schema_head()},
    }
