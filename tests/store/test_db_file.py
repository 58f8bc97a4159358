"""The embedded SQLite database is private to Bastion's user: it holds the MCP session key and,
without a master key, the OAuth signing keys."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.store.db import Database

pytestmark = pytest.mark.anyio


@pytest.fixture
def loose_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_database_and_its_directory_are_readable_by_bastions_user_alone(
    tmp_path: Path, loose_umask: None
) -> None:
    path = tmp_path / "var" / "bastion.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await database.migrate()
    finally:
        await database.close()
    assert _mode(path.parent) == 0o700
    assert _mode(path) == 0o600
    assert all(_mode(p) & 0o077 == 0 for p in path.parent.iterdir())  # journal files too


async def test_a_database_file_anyone_could_read_loses_those_bits_and_keeps_its_groups(
    tmp_path: Path, loose_umask: None
) -> None:
    path = tmp_path / "old.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    database = Database(f"sqlite+aiosqlite:///{path}")
    await database.close()
    assert _mode(path) == 0o640  # the group's read stays: an operator's choice (backups)


async def test_a_read_only_look_creates_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "bastion.db"
    database = Database(f"sqlite+aiosqlite:///{path}", read_only=True)
    await database.close()
    assert not path.parent.exists()
