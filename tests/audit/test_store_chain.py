"""The audit trail in the store: per-tenant chains, tamper detection, durability without the store."""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import orjson
import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.exc import SQLAlchemyError

from bastion.audit.chain import AuditRecord
from bastion.errors import AuditUnavailable
from bastion.store.db import Database
from bastion.store.models import AuditEntry, Tenant
from bastion.store.repos.audit import AuditLog, verify_chain
from bastion.store.repos.audit_directory import COMMANDS, command_directory, hold, release
from bastion.store.repos.audit_journal import JournalFile, journal_lines
from bastion.store.tenancy import SYSTEM
from tests.harness import eventually, postgres_url

pytestmark = pytest.mark.anyio


def _record(n: int, target: str = "") -> AuditRecord:
    at = 1_700_000_000_000_000 + n
    return AuditRecord(id=f"r{n:04d}", at_us=at, correlation_id=f"c{n}", kind="mcp.request", target=target)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/audit.db"
    else:
        url = postgres_url() or ""
        if not url:
            pytest.skip("PostgreSQL is not reachable (set BASTION_TEST_POSTGRES_URL)")
    database = Database(url)
    await database.migrate()
    async with database.session(SYSTEM) as session:
        await session.execute(delete(AuditEntry))
        await session.execute(text("DELETE FROM audit_heads"))
        if await session.get(Tenant, "acme") is None:
            session.add(Tenant(id="acme", slug="acme-audit", name="Acme"))
    try:
        yield database
    finally:
        await database.close()


async def _write(log: AuditLog, tenant: str, numbers: range) -> None:
    durables = [log.record(tenant, _record(n, target="list_stock")) for n in numbers]
    await log.flush()
    for durable in durables:
        await durable.wait()


async def _stored_between_two(db: Database, tmp_path: Path, odd: AuditRecord) -> AuditEntry:
    """`odd` (record 2) written between records 1 and 3; the chain verifies; its stored row."""
    log = AuditLog(db, tmp_path / "journal")
    durables = [log.record("default", r) for r in (_record(1), odd, _record(3, target="after"))]
    await log.flush()
    for durable in durables:
        await durable.wait()
    assert await verify_chain(db, "default") == (3, None)  # the hash covers what was stored
    async with db.session(SYSTEM) as session:
        row = await session.get(AuditEntry, "r0002")
    assert row is not None
    return row


async def test_each_tenant_has_its_own_chain_that_verifies(db: Database, tmp_path: Path) -> None:
    log = AuditLog(db, tmp_path / "journal", batch_size=7)
    await _write(log, "default", range(1, 21))
    await _write(log, "acme", range(21, 26))
    await _write(log, "default", range(26, 31))
    assert await verify_chain(db, "default") == (25, None)
    assert await verify_chain(db, "acme") == (5, None)


async def test_a_record_carrying_nul_characters_is_kept_and_the_chain_goes_on(db: Database, tmp_path: Path) -> None:
    """A request can carry U+0000 (a JSON string, a percent-encoded path), which PostgreSQL's text
    refuses: the record is kept with U+FFFD in its place, its hash covers what is stored, and the
    records after it are stored too (before, the failing batch was retried forever)."""
    odd = dataclasses.replace(
        _record(2, target="list\x00stock"), reason="no\x00such", detail={"k\x00": ["v\x00", {"n": 1}]}
    )
    row = await _stored_between_two(db, tmp_path, odd)
    assert (row.target, row.reason, row.detail) == (
        "list\ufffdstock",
        "no\ufffdsuch",
        {"k\ufffd": ["v\ufffd", {"n": 1}]},
    )


async def test_a_field_longer_than_its_column_is_cut_to_it_and_the_chain_goes_on(db: Database, tmp_path: Path) -> None:
    """A client's made-up method name can be any length; its column is 128 characters, and PostgreSQL
    refuses longer (SQLite does not): the batch, and every later one of every tenant, was refused."""
    long = dataclasses.replace(_record(2), method="m" * 5000, reason="r" * 900, client="c" * 3000)
    row = await _stored_between_two(db, tmp_path, long)
    assert (len(row.method), len(row.reason), len(row.client)) == (128, 500, 2048)


async def test_a_batch_that_failed_after_others_were_stored_retries_only_what_was_not(
    db: Database, tmp_path: Path
) -> None:
    """Two batches in one round: the first is committed, the second fails. Only the second is
    tried again: the first, chained a second time, was refused for its ids in every later round."""
    log = AuditLog(db, tmp_path / "journal", batch_size=2)
    real_append = log._append
    calls = 0

    async def second_fails(batch: list[tuple[str, AuditRecord]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise SQLAlchemyError("the store went away")
        await real_append(batch)

    log._append = second_fails  # type: ignore[method-assign]
    durables = [log.record("default", _record(n)) for n in range(1, 5)]
    with pytest.raises(SQLAlchemyError):
        await log.flush()
    log._append = real_append  # type: ignore[method-assign]
    await log.flush()
    for durable in durables:
        await durable.wait()
    assert await verify_chain(db, "default") == (4, None)


async def test_a_batch_committed_whose_reply_was_lost_is_not_chained_twice_and_the_log_goes_on(
    db: Database, tmp_path: Path
) -> None:
    """The connection drops during COMMIT after the store committed: the batch is put back as failed.
    Tried again, its ids are refused: what the store holds is left out, not retried for ever."""
    log = AuditLog(db, tmp_path / "journal")
    real_append = log._append
    lost = True

    async def commits_then_loses_the_reply(batch: list[tuple[str, AuditRecord]]) -> None:
        nonlocal lost
        await real_append(batch)
        if lost:
            lost = False
            raise SQLAlchemyError("connection lost during COMMIT")

    log._append = commits_then_loses_the_reply  # type: ignore[method-assign]
    first = [log.record("default", _record(n)) for n in range(1, 3)]
    with pytest.raises(SQLAlchemyError):
        await log.flush()
    later = log.record("default", _record(3))
    await log.flush()  # the two again (refused, then left out) and the new one
    for durable in (*first, later):
        await durable.wait()
    assert await verify_chain(db, "default") == (3, None)
    assert log.backlog() == (0, 0)


async def test_a_detail_json_cannot_hold_is_kept_as_text_and_the_journal_goes_on(db: Database, tmp_path: Path) -> None:
    """A plugin stage's decision may carry a set or an object: kept as its repr, not a journal that
    fails every sync (and with it every forwarded call) from then on."""
    odd = dataclasses.replace(_record(2), detail={"pipeline": [{"stage": "mine", "seen": {"a"}, 3: object}]})
    row = await _stored_between_two(db, tmp_path, odd)
    assert row.detail == {"pipeline": [{"stage": "mine", "seen": "{'a'}", "3": "<class 'object'>"}]}


async def test_recovery_leaves_this_processs_own_journal_to_its_store_rounds(db: Database, tmp_path: Path) -> None:
    """Recovery runs while calls are already served: a journal file this process has written and
    not yet stored is its own store round's. Recovered as well, its records were chained twice."""
    log = AuditLog(db, tmp_path / "journal")
    durables = [log.record("default", _record(n)) for n in range(1, 4)]
    for durable in durables:
        await durable.wait()  # journaled, not stored
    await log.recover()
    await log.flush()
    assert await verify_chain(db, "default") == (3, None)


async def test_journals_left_while_the_store_was_down_at_start_are_recovered_once_it_is_back(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    (journal / "audit-journal-00000000000000000001-000001.jsonl").write_bytes(
        orjson.dumps({"tenant_id": "default", **dataclasses.asdict(_record(1))}) + b"\n"
    )
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/audit.db")  # no schema yet: the store refuses
    log = AuditLog(db, journal, store_interval=0.05)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(log.run)
        await anyio.sleep(0.2)  # recovery failed at start, and again each round
        await db.migrate()
        for _ in range(200):  # within 10 s
            if not any(journal.glob("audit-journal-00000000000000000001-*")):
                break
            await anyio.sleep(0.05)
        tasks.cancel_scope.cancel()
    assert await verify_chain(db, "default") == (1, None)
    await db.close()


async def test_a_long_store_outage_keeps_memory_bounded_and_every_record_reaches_the_chain_in_order(
    tmp_path: Path,
) -> None:
    """Past `max_unstored`, the log lets go of its copies: the journal files hold them, and once the
    store is back they are stored first, then what was journaled since, in the order of the calls."""
    journal = tmp_path / "journal"
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/audit.db")  # no schema yet: the store refuses
    log = AuditLog(db, journal, store_interval=0.02, max_unstored=4)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(log.run)
        for n in range(1, 31):  # calls answered all through the outage: each record durable
            await log.record("default", _record(n)).wait()
            assert len(log._journaled) <= 4 + 3  # at most one round's worth above the bound
            assert log.backlog() == (0, n)  # what waits for the store is still counted
            if n % 3 == 0:
                await anyio.sleep(0.1)  # a few store rounds fail meanwhile
        assert len(list(journal.glob("audit-journal-*.jsonl"))) > 1
        await db.migrate()
        await eventually(lambda: _stored_all(log))
        tasks.cancel_scope.cancel()
    async with db.session(SYSTEM) as session:
        ids = (await session.scalars(text("SELECT id FROM audit_records ORDER BY seq"))).all()
    assert ids == [f"r{n:04d}" for n in range(1, 31)]
    assert await verify_chain(db, "default") == (30, None)
    assert list(journal.glob("audit-journal-*")) == []
    await db.close()


async def test_records_let_go_of_in_an_outage_reach_the_chain_before_newer_ones_at_shutdown(tmp_path: Path) -> None:
    """The store comes back and the process stops before its next round: the shutdown stores what
    the outage spilled first, then what came after, in the order of the calls."""
    journal = tmp_path / "journal"
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/audit.db")  # no schema yet: the store refuses
    log = AuditLog(db, journal, store_interval=0.02, max_unstored=2)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(log.run)
        for n in range(1, 7):
            await log.record("default", _record(n)).wait()
            if n % 3 == 0:
                await anyio.sleep(0.1)  # failed rounds: past the bound, the log lets go of them
        tasks.cancel_scope.cancel()
    assert log.backlog() == (0, 6) and len(log._journaled) < 6
    await db.migrate()
    for n in (7, 8):
        await log.record("default", _record(n)).wait()
    await log.aclose()
    async with db.session(SYSTEM) as session:
        ids = (await session.scalars(text("SELECT id FROM audit_records ORDER BY seq"))).all()
    assert ids == [f"r{n:04d}" for n in range(1, 9)]
    assert log.backlog() == (0, 0) and list(journal.glob("audit-journal-*")) == []
    await db.close()


async def _stored_all(log: AuditLog) -> bool:
    return log.backlog() == (0, 0)


async def test_one_changed_byte_in_the_database_is_found_at_its_record(db: Database, tmp_path: Path) -> None:
    log = AuditLog(db, tmp_path / "journal")
    await _write(log, "default", range(1, 11))
    async with db.session(SYSTEM) as session:
        await session.execute(
            text("UPDATE audit_records SET target = 'list_stocK' WHERE tenant_id = 'default' AND seq = 7")
        )
    checked, broken = await verify_chain(db, "default")
    assert broken is not None and broken.seq == 7 and "changed" in broken.reason and checked == 6


async def test_a_removed_tail_is_found_through_the_head(db: Database, tmp_path: Path) -> None:
    log = AuditLog(db, tmp_path / "journal")
    await _write(log, "default", range(1, 6))
    async with db.session(SYSTEM) as session:
        await session.execute(text("DELETE FROM audit_records WHERE tenant_id = 'default' AND seq = 5"))
    checked, broken = await verify_chain(db, "default")
    assert checked == 4 and broken is not None and "removed" in broken.reason


async def test_without_the_store_records_stay_journaled_and_reach_it_at_the_next_start(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    broken_store = Database(f"sqlite+aiosqlite:///{tmp_path}/missing-dir/nope.db")  # cannot be opened
    down = AuditLog(broken_store, journal)
    durables = [down.record("default", _record(n)) for n in range(1, 4)]
    with pytest.raises(SQLAlchemyError):
        await down.flush()  # journaled and durable although the store is unreachable
    for durable in durables:
        await durable.wait()
    assert sum(len(f.read_text().splitlines()) for f in journal.iterdir()) == 3
    await broken_store.close()

    good = Database(f"sqlite+aiosqlite:///{tmp_path}/audit.db")
    await good.migrate()
    up = AuditLog(good, journal)
    await up.recover()  # what `run` does first: the old journal, in order
    await _write(up, "default", range(4, 6))
    assert list(journal.iterdir()) == []
    async with good.session(SYSTEM) as session:
        ids = (await session.scalars(text("SELECT id FROM audit_records ORDER BY seq"))).all()
    assert ids == [f"r{n:04d}" for n in range(1, 6)]
    assert await verify_chain(good, "default") == (5, None)
    # A journal replayed twice (a crash right after writing the store) adds nothing twice.
    again = AuditLog(good, tmp_path / "again")
    await _write(again, "default", range(6, 7))
    (tmp_path / "again").mkdir(exist_ok=True)
    (tmp_path / "again" / "audit-journal-00000000000000000001-000001.jsonl").write_bytes(
        orjson.dumps({"tenant_id": "default", **dataclasses.asdict(_record(6))}) + b"\n"
    )
    await AuditLog(good, tmp_path / "again").recover()
    assert await verify_chain(good, "default") == (6, None)
    # A process killed with a file open leaves its allocated tail as zeros: the records before it count.
    (tmp_path / "again" / "audit-journal-00000000000000000002-000001.jsonl").write_bytes(
        orjson.dumps({"tenant_id": "default", **dataclasses.asdict(_record(7))}) + b"\n" + b"\0" * 4096
    )
    await AuditLog(good, tmp_path / "again").recover()
    assert await verify_chain(good, "default") == (7, None)
    await good.close()


async def test_a_journal_file_is_allocated_ahead_and_cut_back_to_its_records_when_closed(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/audit.db")
    await db.migrate()
    log = AuditLog(db, tmp_path / "journal")
    await log.record("default", _record(1)).wait()
    [path] = (tmp_path / "journal").iterdir()
    line = orjson.dumps({"tenant_id": "default", **dataclasses.asdict(_record(1))})
    assert path.stat().st_size > len(line) + 1  # allocated ahead, zeros after the record
    assert journal_lines(path.read_bytes()) == [path.read_bytes()[: path.read_bytes().index(b"\n")]]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    held = log._current
    assert held is not None
    held.write(b"x" * 300_000)  # past the first allocation: more is allocated
    held.close()
    log._current = None
    assert path.stat().st_size == path.read_bytes().index(b"\n") + 1 + 300_000  # cut back to what was written
    await db.close()


async def test_callers_waiting_at_once_share_one_sync_and_each_finds_its_record_on_disk(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/audit.db")
    await db.migrate()
    syncs: list[float] = []

    class Counted(JournalFile):  # a real journal file that counts its syncs
        def sync(self) -> float:
            syncs.append(took := super().sync())
            return took

    log = AuditLog(db, journal, journal_file=Counted)

    async def call(n: int) -> None:
        log.record("default", _record(2 * n, target="upstream"))  # nobody waits on this one: it rides along
        await log.record("default", _record(2 * n + 1)).wait()
        # The file is still open: space allocated ahead of its records reads as zeros.
        records = [line for f in journal.iterdir() for line in journal_lines(f.read_bytes())]
        written = {orjson.loads(line)["id"] for line in records}
        assert {f"r{2 * n:04d}", f"r{2 * n + 1:04d}"} <= written

    async with anyio.create_task_group() as tasks:
        for n in range(32):
            tasks.start_soon(call, n)
    # The first waiter syncs its own records; the 31 that queued meanwhile share the next sync.
    assert 1 <= len(syncs) <= 3, len(syncs)
    assert sum(len(journal_lines(f.read_bytes())) for f in journal.iterdir()) == 64
    await log.aclose()  # and on to the store: all 64, chained
    assert await verify_chain(db, "default") == (64, None)
    await db.close()


async def test_a_journal_that_cannot_be_written_refuses_the_call_and_keeps_its_records(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    journal.write_text("a file where the journal directory should be")
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/audit.db")
    await db.migrate()
    log = AuditLog(db, journal)
    first = log.record("default", _record(1))
    with pytest.raises(AuditUnavailable, match="audit journal could not be written"):
        await first.wait()
    assert not first.done
    journal.unlink()  # the disk is writable again: the kept record goes with the next one
    await log.record("default", _record(2)).wait()
    assert first.done
    await log.flush()
    async with db.session(SYSTEM) as session:
        ids = (await session.scalars(text("SELECT id FROM audit_records ORDER BY seq"))).all()
    assert ids == ["r0001", "r0002"]
    assert await verify_chain(db, "default") == (2, None)
    await log.aclose()
    await db.close()


def test_bastion_audit_verify_reports_the_first_broken_record(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/bastion.db"

    async def seed() -> None:
        db = Database(url)
        await db.migrate()
        await _write(AuditLog(db, tmp_path / "journal"), "default", range(1, 9))
        await db.close()

    anyio.run(seed)
    env = {**os.environ, "BASTION_DATABASE_URL": url, "BASTION_LOG_LEVEL": "warning"}
    intact = subprocess.run(
        [sys.executable, "-m", "bastion", "audit", "verify"], env=env, capture_output=True, text=True, check=False
    )
    assert intact.returncode == 0 and "default: 8 records, chain intact" in intact.stdout, intact.stderr

    async def tamper() -> None:
        db = Database(url)
        async with db.session(SYSTEM) as session:
            await session.execute(text("UPDATE audit_records SET latency_us = latency_us + 1 WHERE seq = 5"))
        await db.close()

    anyio.run(tamper)
    broken = subprocess.run(
        [sys.executable, "-m", "bastion", "audit", "verify"], env=env, capture_output=True, text=True, check=False
    )
    assert broken.returncode == 1 and "default: BROKEN at record 5" in broken.stdout, broken.stdout + broken.stderr


async def test_a_filesystem_that_cannot_allocate_ahead_gets_plain_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")  # what such a filesystem answers

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/audit.db")
    await db.migrate()
    log = AuditLog(db, tmp_path / "journal")
    for n in range(1, 4):
        await log.record("default", _record(n)).wait()
    [path] = (tmp_path / "journal").iterdir()
    assert len(path.read_bytes().splitlines()) == 3 and not path.read_bytes().endswith(b"\0")
    await log.aclose()
    assert await verify_chain(db, "default") == (3, None)
    await db.close()


async def test_a_second_process_on_the_same_journal_directory_is_refused(db: Database, tmp_path: Path) -> None:
    """Recovery stores the files of the directory a process did not write: two live processes on one
    directory would chain each other's records twice. The second one's audit log refuses to start."""
    first = AuditLog(db, tmp_path / "journal")
    second = AuditLog(db, tmp_path / "journal")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(first.run)
        await anyio.sleep(0.1)
        with pytest.raises(AuditUnavailable, match="in use by another Bastion process"):
            await second.run()
        tasks.cancel_scope.cancel()
    async with anyio.create_task_group() as tasks:  # released with the first: a restart takes it
        tasks.start_soon(second.run)
        await anyio.sleep(0.1)
        tasks.cancel_scope.cancel()


async def test_a_directory_the_process_holds_itself_stays_held_after_a_log_that_adopted_it_ends(
    db: Database, tmp_path: Path
) -> None:
    """`bastion serve` holds its directory once, for its preparation and its server both: between the
    two logs (the first ended, the next not yet started) no other process can take it."""
    journal = tmp_path / "journal"
    held = hold(journal)
    try:
        for _ in range(2):  # the preparation's log, then the server's
            adopted = AuditLog(db, journal)
            adopted.adopt_directory(held)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(adopted.run)
                await anyio.sleep(0.05)
                tasks.cancel_scope.cancel()
            with pytest.raises(AuditUnavailable, match="in use by another Bastion process"):
                await AuditLog(db, journal).run()  # another process, in between
    finally:
        release(journal, held, remove=False)
    async with anyio.create_task_group() as tasks:  # released at the end: a restart takes it
        tasks.start_soon(AuditLog(db, journal).run)
        await anyio.sleep(0.05)
        tasks.cancel_scope.cancel()


async def _left_behind(db: Database, journal: Path, n: int, *, age: float) -> tuple[AuditLog, Path]:
    """A CLI command's log whose record was journaled, never stored: as its process leaves it when killed."""
    directory = command_directory(journal)
    command = AuditLog(db, directory)
    command.hold_directory()
    await command.record("default", _record(n)).wait()
    seconds = time.time() - age
    os.utime(directory, (seconds, seconds))
    return command, directory


async def test_a_killed_commands_journal_is_adopted_by_the_server_once_its_lock_is_free(
    db: Database, tmp_path: Path
) -> None:
    """A CLI command journals in a directory of its own under the server's (the server holds its own).
    Killed before storing, it leaves records there: the server's log stores them and removes the
    directory, but not while the command still holds it, nor one made in the last minute (between
    being made and being locked)."""
    journal = tmp_path / "journal"
    killed, killed_dir = await _left_behind(db, journal, 1, age=120)
    killed.release_directory()  # the kernel's part of a kill: its lock goes, its file stays
    live, live_dir = await _left_behind(db, journal, 2, age=120)
    young, young_dir = await _left_behind(db, journal, 3, age=0)
    young.release_directory()
    server = AuditLog(db, journal)
    server.hold_directory()
    await server.recover()
    assert await verify_chain(db, "default") == (1, None)
    async with db.session(SYSTEM) as session:
        assert [entry.id for entry in await session.scalars(select(AuditEntry))] == [_record(1).id]
    assert not killed_dir.exists() and live_dir.exists() and young_dir.exists()
    live.release_directory()
    await server.recover()  # the next look (once a minute while serving) takes the one now free
    assert await verify_chain(db, "default") == (2, None) and not live_dir.exists() and young_dir.exists()
    server.release_directory()


async def test_a_running_log_looks_again_and_so_does_the_next_command(db: Database, tmp_path: Path) -> None:
    """The server looks for left-behind command directories while it runs (once a minute; here
    faster), and a command adopts a killed sibling's too: one run from where no server looks would
    otherwise keep its records forever. A file it cannot read is set aside, not fatal."""
    journal = tmp_path / "journal"
    server = AuditLog(db, journal, store_interval=0.05, adopt_seconds=0.1)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.run)
        killed, killed_dir = await _left_behind(db, journal, 1, age=120)
        killed.release_directory()

        async def adopted() -> bool:
            return not killed_dir.exists()

        await eventually(adopted)
        await server.aclose()
        tasks.cancel_scope.cancel()
    assert await verify_chain(db, "default") == (1, None)
    other, other_dir = await _left_behind(db, journal, 2, age=120)
    other.release_directory()
    unreadable = command_directory(journal)
    unreadable.mkdir(parents=True)
    (unreadable / "audit-journal-1.jsonl").write_bytes(b'{"tenant_id": "default", "not": "a record"}\n')
    os.utime(unreadable, (time.time() - 120, time.time() - 120))
    command = AuditLog(db, command_directory(journal))
    command.hold_directory()
    await command.recover()
    command.release_directory()
    assert await verify_chain(db, "default") == (2, None) and not other_dir.exists()
    assert [p.name for p in unreadable.iterdir() if not p.name.startswith(".")] == ["audit-journal-1.jsonl.unreadable"]


async def test_a_commands_directory_is_removed_when_it_ends_with_everything_stored(
    db: Database, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    command = AuditLog(db, command_directory(journal))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(command.run)
        await command.record("default", _record(1)).wait()
        await command.aclose()
        tasks.cancel_scope.cancel()
    assert await verify_chain(db, "default") == (1, None)
    assert list((journal / COMMANDS).iterdir()) == []
