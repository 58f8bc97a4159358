"""Where the journal's fdatasync runs: on the event loop while syncs are quick on average, in a
worker thread while the disk is slow, so a slow disk never stalls the loop for long."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import pytest

from bastion.audit.chain import AuditRecord
from bastion.store.db import Database
from bastion.store.repos.audit import AuditLog
from bastion.store.repos.audit_journal import JournalFile

pytestmark = pytest.mark.anyio


class Disk:
    """A disk whose syncs take `delays` seconds more, in turn (then none), and which remembers the
    thread each sync ran in."""

    def __init__(self, delays: list[float]) -> None:
        self.delays = delays
        self.threads: list[int] = []


class SlowFile(JournalFile):
    """A real journal file (real writes, real fdatasync) on `disk`."""

    def __init__(self, path: Path, disk: Disk) -> None:
        super().__init__(path)
        self._disk = disk

    def sync(self) -> float:
        self._disk.threads.append(threading.get_ident())
        delay = self._disk.delays.pop(0) if self._disk.delays else 0.0
        time.sleep(delay)  # the slow device: the caller waits as it would for the disk
        return super().sync() + delay


async def _syncs(tmp_path: Path, disk: Disk, count: int) -> list[bool]:
    """Journal `count` records one at a time; for each sync, whether it ran off the loop's thread."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/audit.db")
    await db.migrate()
    log = AuditLog(db, tmp_path / "journal", journal_file=lambda path: SlowFile(path, disk))
    loop_thread = threading.get_ident()
    try:
        for n in range(count):
            record = AuditRecord(id=f"r{n}", at_us=n, correlation_id=f"c{n}", kind="mcp.request")
            with anyio.fail_after(5):
                await log.record("default", record).wait()
        await log.aclose()
    finally:
        await db.close()
    return [thread != loop_thread for thread in disk.threads[:count]]


async def test_a_disk_that_stays_slow_gets_its_syncs_off_the_loop(tmp_path: Path) -> None:
    off_loop = await _syncs(tmp_path, Disk([0.004] * 30), 30)
    assert off_loop[0] is False  # nothing known yet: on the loop
    assert all(off_loop[10:]), off_loop  # the average passed 1 ms within a few syncs, and stays there


async def test_one_slow_sync_among_quick_ones_keeps_them_on_the_loop(tmp_path: Path) -> None:
    off_loop = await _syncs(tmp_path, Disk([0.0] * 10 + [0.003] + [0.0] * 9), 20)
    assert not any(off_loop), off_loop


async def test_syncs_come_back_to_the_loop_once_the_disk_is_quick_again(tmp_path: Path) -> None:
    off_loop = await _syncs(tmp_path, Disk([0.004] * 15), 60)  # then quick
    assert any(off_loop[:15]) and not any(off_loop[-10:]), off_loop
