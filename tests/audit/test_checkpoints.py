"""Signed checkpoints of the audit chains, on SQLite and PostgreSQL: made every N records and by time,
checked by `verify_chain`, and not forgeable by someone who can write the database but holds no key."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import orjson
import pytest
from joserfc import jws
from sqlalchemy import select, update

from bastion.audit.checkpoints import Checkpoint, check, key_owner, sign
from bastion.oauth.keys import KeyRing
from bastion.store.db import Database
from bastion.store.models import DEFAULT_TENANT, AuditCheckpoint, AuditCheckpointKey, AuditEntry
from bastion.store.repos.audit import verify_chain, verify_report
from bastion.store.repos.audit_checkpoints import checkpoint_of, load_trusted_keys
from bastion.store.repos.vault import check_vault, rewrap_all
from bastion.store.tenancy import SYSTEM
from bastion.vault.envelope import MasterKey, MasterKeys
from tests.audit.chains import (
    BASE_US,
    Clock,
    Keys,
    attacker_vault,
    audit_log,
    bastion,
    cli_env,
    record,
    rewrite_tail,
    write,
)
from tests.harness import postgres_url
from tests.pg import scratch_database

pytestmark = pytest.mark.anyio


async def _checkpoints(db: Database, tenant_id: str) -> list[AuditCheckpoint]:
    async with db.session(SYSTEM) as session:
        return list(
            await session.scalars(
                select(AuditCheckpoint).where(AuditCheckpoint.tenant_id == tenant_id).order_by(AuditCheckpoint.seq)
            )
        )


async def _hashes(db: Database, tenant_id: str) -> dict[int, str]:
    async with db.session(SYSTEM) as session:
        rows = await session.execute(select(AuditEntry.seq, AuditEntry.hash).where(AuditEntry.tenant_id == tenant_id))
        return {seq: digest for seq, digest in rows.all()}


async def _twelve_records(db: Database, tmp_path: Path, keys: Keys, tenant: str) -> None:
    """Twelve records in three batches of four, a checkpoint every five: at records 5 and 10."""
    log = audit_log(db, tmp_path, keys, every=5)
    for start in (1, 5, 9):
        await write(log, tenant, [record(n) for n in range(start, start + 4)])


def _kid(signature: str) -> str:
    return str(jws.extract_compact(signature.encode()).headers()["kid"])


async def test_a_checkpoint_is_signed_every_n_records_and_each_signature_verifies(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    await _twelve_records(store, tmp_path, keys, tenant)
    pins, hashes = await _checkpoints(store, tenant), await _hashes(store, tenant)
    assert [pin.seq for pin in pins] == [5, 10]
    async with store.session(SYSTEM) as session:
        trusted = await load_trusted_keys(session, store.vault)
    for pin in pins:
        assert pin.hash == hashes[pin.seq]
        assert check(pin.signature, checkpoint_of(pin), trusted) is None
        header = jws.extract_compact(pin.signature.encode()).headers()
        assert header == {"alg": "ES256", "kid": keys.ring.active.kid, "typ": "bastion-audit-checkpoint+jwt"}
        claims = orjson.loads(jws.extract_compact(pin.signature.encode()).payload)
        assert claims == {"tenant": tenant, "seq": pin.seq, "hash": pin.hash, "at_us": BASE_US, "iat": BASE_US // 10**6}
    report = await verify_report(store, tenant)
    assert (report.checked, report.broken, report.checkpoints, report.last_checkpoint) == (12, None, 2, 10)


async def test_a_checkpoint_is_signed_once_the_interval_passes_and_records_came(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    clock = Clock()
    log = audit_log(store, tmp_path, keys, every=1000, seconds=60, clock=clock)
    await write(log, tenant, [record(1), record(2)])  # the chain starts now: nothing is due
    clock.now += 59_000_000
    await write(log, tenant, [record(3)])
    assert await _checkpoints(store, tenant) == []
    clock.now += 2_000_000  # 61 s since the chain began
    await write(log, tenant, [record(4)])
    clock.now += 120_000_000  # time passes without records: nothing to pin
    await log.flush()
    clock.now += 30_000_000
    await write(log, tenant, [record(5)])  # records again, and more than 60 s since the last checkpoint
    pins = await _checkpoints(store, tenant)
    assert [(pin.seq, pin.at_us - BASE_US) for pin in pins] == [(4, 61_000_000), (5, 211_000_000)]
    assert await verify_chain(store, tenant) == (5, None)


async def test_a_quiet_chains_last_records_are_signed_once_the_interval_passes(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    """No record comes after the last ones: the store's next round signs them once the interval is
    past, not whenever the tenant's next record comes (if it ever does)."""
    clock = Clock()
    log = audit_log(store, tmp_path, keys, every=1000, seconds=60, clock=clock)
    await write(log, tenant, [record(1), record(2), record(3)])
    await log.flush()
    assert await _checkpoints(store, tenant) == []  # not due yet
    clock.now += 61_000_000
    await log.flush()  # a round with nothing to store
    pins = await _checkpoints(store, tenant)
    assert [(pin.seq, pin.at_us - BASE_US) for pin in pins] == [(3, 61_000_000)]
    await log.flush()
    assert len(await _checkpoints(store, tenant)) == 1  # signed once
    assert (await verify_report(store, tenant)).last_checkpoint == 3


async def test_a_checkpoint_whose_signature_was_altered_fails_verify_naming_it(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    await _twelve_records(store, tmp_path, keys, tenant)
    pin = (await _checkpoints(store, tenant))[1]
    head, payload, signature = pin.signature.split(".")
    altered = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    async with store.session(SYSTEM) as session:
        await session.execute(
            update(AuditCheckpoint).where(AuditCheckpoint.id == pin.id).values(signature=f"{head}.{payload}.{altered}")
        )
    checked, broken = await verify_chain(store, tenant)
    assert broken is not None and broken.seq == 10, broken
    assert "checkpoint at record 10" in broken.reason and "does not verify" in broken.reason
    assert checked == 5  # what the checkpoint at record 5 still vouches for


async def test_a_checkpoint_whose_hash_no_longer_matches_its_record_fails_verify_naming_it(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    await _twelve_records(store, tmp_path, keys, tenant)
    async with store.session(SYSTEM) as session:
        await session.execute(
            update(AuditCheckpoint)
            .where(AuditCheckpoint.tenant_id == tenant, AuditCheckpoint.seq == 5)
            .values(hash="0" * 64)
        )
    checked, broken = await verify_chain(store, tenant)
    assert broken is not None and broken.seq == 5 and "checkpoint at record 5" in broken.reason, broken
    assert "altered" in broken.reason and checked == 0


async def test_a_rewrite_of_the_whole_tail_fails_verify_at_the_first_checkpoint_it_contradicts(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    await _twelve_records(store, tmp_path, keys, tenant)
    await rewrite_tail(store, tenant, 7)  # every link holds again, and the head agrees
    checked, broken = await verify_chain(store, tenant)
    assert broken is not None and broken.seq == 10, broken
    assert "rewritten" in broken.reason and "one of 6 to 10" in broken.reason
    assert "checkpoint at record 5 still holds" in broken.reason and checked == 5


async def test_a_checkpoint_signed_by_a_rotated_out_key_still_verifies(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    log = audit_log(store, tmp_path, keys, every=5)
    await write(log, tenant, [record(n) for n in range(1, 6)])
    old = keys.rotate_and_prune()  # the ring no longer holds the key that signed record 5's checkpoint
    await write(log, tenant, [record(n) for n in range(6, 11)])
    first, second = await _checkpoints(store, tenant)
    assert _kid(first.signature) == old != _kid(second.signature) == keys.ring.active.kid
    assert old not in {key.kid for key in keys.ring.keys}
    report = await verify_report(store, tenant)
    assert (report.broken, report.checkpoints) == (None, 2)


async def test_a_key_planted_in_the_database_does_not_make_a_forged_checkpoint_verify(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    await _twelve_records(store, tmp_path, keys, tenant)
    await rewrite_tail(store, tenant, 7)
    # The attacker signs a checkpoint of the rewritten chain with a key of their own...
    forger = KeyRing.fresh(0).active
    new_hash = (await _hashes(store, tenant))[10]
    pin = (await _checkpoints(store, tenant))[1]
    forged = sign(forger, Checkpoint(tenant, 10, new_hash, pin.at_us))
    async with store.session(SYSTEM) as session:
        await session.execute(
            update(AuditCheckpoint).where(AuditCheckpoint.id == pin.id).values(hash=new_hash, signature=forged)
        )
    sealed_with_another_key = attacker_vault().seal(orjson.dumps(forger.public_jwk()), key_owner(forger.kid))
    async with store.session(SYSTEM) as session:
        genuine = await session.get(AuditCheckpointKey, keys.ring.active.kid)
    assert genuine is not None
    # ...and plants its public key: in the clear, sealed with a master key of their own, or in the
    # place of a genuine sealed key (copied under the forger's kid).
    for planted in (orjson.dumps(forger.public_jwk()).decode(), sealed_with_another_key, genuine.public_jwk):
        async with store.session(SYSTEM) as session:
            await session.merge(AuditCheckpointKey(kid=forger.kid, public_jwk=planted, added_at_us=BASE_US))
        checked, broken = await verify_chain(store, tenant)
        assert broken is not None and broken.seq == 10, broken
        assert f"signed by key '{forger.kid}', which is not trusted" in broken.reason
        assert checked == 5


def test_bastion_audit_verify_says_where_a_rewritten_chain_breaks(tmp_path: Path, master_key: str) -> None:
    import anyio

    from bastion.vault.keys import keys_from_env

    url = f"sqlite+aiosqlite:///{tmp_path}/bastion.db"

    async def seed_and_rewrite() -> None:
        db = Database(url)
        await db.migrate()
        db.vault = keys_from_env(master_key)
        await _twelve_records(db, tmp_path, Keys(), "default")
        assert await verify_chain(db, "default") == (12, None)
        await rewrite_tail(db, "default", 7)
        await db.close()

    anyio.run(seed_and_rewrite)
    result = bastion("audit", "verify", "--tenant", "default", env=cli_env(url, master_key))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "default: BROKEN at record 10: the signed checkpoint at record 10 fails" in result.stdout
    assert "the first changed record is one of 6 to 10" in result.stdout


async def test_checkpoints_keep_verifying_after_the_master_key_rotates_and_the_old_one_is_dropped(
    store_url: str, tmp_path: Path, keys: Keys
) -> None:
    # A database of its own: the rewrap reseals every secret in it, and every test has its own master key.
    async with AsyncExitStack() as stack:
        if store_url.startswith("postgresql"):
            base = postgres_url()
            assert base is not None
            store_url = await stack.enter_async_context(scratch_database(base, migrated=True, prefix="bastion_rewrap"))
        else:
            store_url = f"sqlite+aiosqlite:///{tmp_path}/rewrap.db"
        store = Database(store_url)
        stack.push_async_callback(store.close)
        await store.migrate()
        store.vault = MasterKeys(MasterKey.generate())
        await _twelve_records(store, tmp_path, keys, DEFAULT_TENANT)
        old = store.vault
        rotated = MasterKeys(MasterKey.generate(), [old.current])  # the new key seals, the old still opens
        assert await rewrap_all(store, rotated) > 0  # the checkpoint keys' seals move too
        store.vault = MasterKeys(rotated.current)  # the old master key is gone
        await check_vault(store, store.vault)
        report = await verify_report(store, DEFAULT_TENANT)
        assert (report.broken, report.checkpoints) == (None, 2)
