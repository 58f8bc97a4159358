"""Retention: records before a cutoff are exported, then pruned at a signed checkpoint; the export
verifies offline, the chain kept verifies from its anchor, and the prune is itself on the record."""

from __future__ import annotations

import dataclasses
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest
from sqlalchemy import delete, select

from bastion.audit.exported import verify_export
from bastion.errors import BastionError
from bastion.oauth.keys import KeyRing
from bastion.store.db import Database
from bastion.store.models import AuditCheckpoint, AuditEntry
from bastion.store.repos.audit import extend_chain, lock_head, verify_chain, verify_report
from bastion.store.repos.audit_retention import prune
from bastion.store.tenancy import SYSTEM
from bastion.vault.keys import keys_from_env
from tests.audit.chains import BASE_US, Keys, audit_log, bastion, cli_env, record, write

pytestmark = pytest.mark.anyio

# Record n is at BASE_US + n seconds: 2023-11-14T22:13:20Z + n s. Checkpoints at records 5 and 10.
BEFORE_RECORD_5 = "2023-11-14T22:13:24"
AFTER_RECORD_10 = "2023-11-14T22:13:31+00:00"


async def _twelve_records(db: Database, tmp_path: Path, keys: Keys, tenant: str) -> None:
    log = audit_log(db, tmp_path, keys, every=5)
    await write(log, tenant, [record(n) for n in range(1, 7)])
    await write(log, tenant, [record(n) for n in range(7, 13)])


async def _records(db: Database, tenant: str) -> list[AuditEntry]:
    async with db.session(SYSTEM) as session:
        statement = select(AuditEntry).where(AuditEntry.tenant_id == tenant).order_by(AuditEntry.seq)
        return list(await session.scalars(statement))


async def test_prune_exports_the_records_up_to_the_anchor_checkpoint_and_the_rest_still_verifies(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    await _twelve_records(store, tmp_path, keys, tenant)
    checkpointer = audit_log(store, tmp_path, keys).checkpointer
    before = await _records(store, tenant)
    export = tmp_path / "first.jsonl"
    # Record 10 is not older than the cutoff: the newest checkpoint before it is the one at record 5.
    results, digest = await prune(store, checkpointer, [tenant], before_us=BASE_US + 9_500_000, export=export)
    assert [(r.first_seq, r.through_seq, r.records) for r in results] == [(1, 5, 5)]
    assert digest == hashlib.sha256(export.read_bytes()).hexdigest()
    [chain] = verify_export(export.read_bytes().splitlines())
    assert (chain.first_seq, chain.last_seq, chain.records, chain.broken) == (1, 5, 5, None)
    assert chain.end_hash == before[4].hash  # it ends where the kept chain's signed anchor is

    kept = await _records(store, tenant)
    assert [r.seq for r in kept] == list(range(6, 14))
    assert [r.id for r in kept[:7]] == [r.id for r in before[5:]]
    prune_record = kept[-1]
    assert (prune_record.kind, prune_record.principal) == ("audit.prune", "cli")
    assert prune_record.detail == {
        "from_seq": 1,
        "through_seq": 5,
        "records": 5,
        "before_us": BASE_US + 9_500_000,
        "export_file": str(export),
        "export_sha256": digest,
    }
    async with store.session(SYSTEM) as session:
        pins = list(await session.scalars(select(AuditCheckpoint.seq).where(AuditCheckpoint.tenant_id == tenant)))
    assert sorted(pins) == [5, 10, 13]  # the anchor kept, and the prune's own record signed at once
    report = await verify_report(store, tenant)
    assert (report.broken, report.start_seq, report.checked) == (None, 6, 8)

    assert export.stat().st_mode & 0o777 == 0o600
    with pytest.raises(BastionError, match="exists"):  # an export is never overwritten; nothing goes
        await prune(store, checkpointer, [tenant], before_us=2**62, export=export)
    assert [r.id for r in await _records(store, tenant)] == [r.id for r in kept]

    # A second prune cuts at the prune record's own checkpoint; its export starts at the old anchor.
    second = tmp_path / "second.jsonl"
    results, _ = await prune(store, checkpointer, [tenant], before_us=2**62, export=second)
    assert [(r.first_seq, r.through_seq) for r in results] == [(6, 13)]
    [chain] = verify_export(second.read_bytes().splitlines())
    assert (chain.first_seq, chain.start_hash, chain.last_seq, chain.broken) == (6, before[4].hash, 13, None)
    assert await verify_chain(store, tenant) == (1, None)


async def test_a_prune_whose_new_start_cannot_be_signed_removes_nothing(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    """The prune's own record must be signed at once (the kept chain starts from it): without a key
    to sign with, the whole prune rolls back, not records removed and the chain left to fail verify."""
    await _twelve_records(store, tmp_path, keys, tenant)
    checkpointer = audit_log(store, tmp_path, keys).checkpointer
    assert checkpointer is not None

    def no_key() -> KeyRing:
        raise BastionError("the key ring is not loaded")

    unsigned = dataclasses.replace(checkpointer, signer=no_key)
    before = [r.id for r in await _records(store, tenant)]
    with pytest.raises(BastionError, match="key ring"):
        await prune(store, unsigned, [tenant], before_us=BASE_US + 11_000_000, export=tmp_path / "never.jsonl")
    assert [r.id for r in await _records(store, tenant)] == before
    assert (await verify_report(store, tenant)).broken is None


async def test_records_removed_back_to_a_checkpoint_without_a_prune_fail_verify(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    await _twelve_records(store, tmp_path, keys, tenant)
    async with store.session(SYSTEM) as session:  # as a prune would, but no audit.prune record says so
        await session.execute(delete(AuditEntry).where(AuditEntry.tenant_id == tenant, AuditEntry.seq <= 5))
    checked, broken = await verify_chain(store, tenant)
    assert broken is not None and broken.seq == 6 and "no audit.prune record" in broken.reason and checked == 0


async def test_a_prune_record_written_with_the_database_alone_does_not_cover_removed_records(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    """Someone who can write the database but holds no signing key removes records 1-5 (back to the
    checkpoint at 5) and appends an `audit.prune` record naming 5, hashed into the chain as any
    record is: a real prune signs a checkpoint at its own record, and this one has none."""
    await _twelve_records(store, tmp_path, keys, tenant)
    async with store.session(SYSTEM) as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.tenant_id == tenant, AuditEntry.seq <= 5))
        head = await lock_head(session, tenant, now_us=BASE_US)
        forged = record(13, kind="audit.prune")
        await extend_chain(session, head, [dataclasses.replace(forged, detail={"through_seq": 5})], None)
    report = await verify_report(store, tenant)
    assert report.broken is not None and report.broken.seq == 13
    assert "not pinned by a signed checkpoint" in report.broken.reason


async def test_a_cutoff_before_the_first_checkpoint_prunes_nothing_and_says_so(tmp_path: Path, master_key: str) -> None:
    url = await _seeded_sqlite(tmp_path, master_key)
    export = tmp_path / "nothing.jsonl"
    result = await anyio.to_thread.run_sync(
        lambda: bastion(
            "audit",
            "prune",
            "--before",
            BEFORE_RECORD_5,
            "--export",
            str(export),
            "--tenant",
            "default",
            env=cli_env(url, master_key),
        )
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "default: nothing pruned: no signed checkpoint is older than the cutoff" in result.stdout
    assert f"{export} not written" in result.stdout and not export.exists()
    db = Database(url)
    async with db.session(SYSTEM) as session:
        kinds = list(await session.scalars(select(AuditEntry.kind).order_by(AuditEntry.seq)))
    await db.close()
    assert len(kinds) == 13 and kinds[-1] == "cli.command"  # nothing removed; the command's own record added


async def test_bastion_audit_prune_exports_a_file_that_verifies_offline_until_a_byte_changes(
    tmp_path: Path, master_key: str
) -> None:
    url = await _seeded_sqlite(tmp_path, master_key)
    env, export, changed = cli_env(url, master_key), tmp_path / "export.jsonl", tmp_path / "changed.jsonl"
    pruned = await anyio.to_thread.run_sync(
        lambda: bastion("audit", "prune", "--before", AFTER_RECORD_10, "--export", str(export), env=env)
    )
    digest = hashlib.sha256(export.read_bytes()).hexdigest()
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert "default: pruned records 1-10 (cut at the signed checkpoint at record 10)" in pruned.stdout
    assert f"exported 10 records to {export} (sha256 {digest})" in pruned.stdout

    lines = export.read_bytes().splitlines(keepends=True)
    assert len(lines) == 10 and b'"target":"list_stock"' in lines[2]
    lines[2] = lines[2].replace(b'"target":"list_stock"', b'"target":"list_stocK"')  # one byte
    changed.write_bytes(b"".join(lines))
    with ThreadPoolExecutor(2) as pool:  # independent processes: at once
        offline, tampered = pool.map(
            lambda path: bastion("audit", "verify", "--file", str(path), env=env), [export, changed]
        )
    assert offline.returncode == 0 and "default: records 1-10 after the genesis, chain intact" in offline.stdout
    assert f"sha256 {digest}" in offline.stdout
    assert tampered.returncode == 1, tampered.stdout
    assert "default: BROKEN at record 3: line 3: its content does not match its hash" in tampered.stdout
    db = Database(url)
    db.vault = keys_from_env(master_key)
    # Records 11 and 12, the prune's own and the command's, from the anchor at 10.
    report = await verify_report(db, "default")
    await db.close()
    assert (report.broken, report.start_seq, report.checked) == (None, 11, 4)


async def _seeded_sqlite(tmp_path: Path, master_key: str) -> str:
    """A SQLite store whose default tenant has twelve records, checkpoints at 5 and 10 (sealed keys)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/bastion.db"
    db = Database(url)
    await db.migrate()
    db.vault = keys_from_env(master_key)
    await _twelve_records(db, tmp_path, Keys(), "default")
    await db.close()
    return url
