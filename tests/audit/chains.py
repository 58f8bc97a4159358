"""Helpers the checkpoint, retention and tail tests share: records, a clock, a key ring that rotates,
what an attacker with database access does, and the real `bastion` command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, text

from bastion.audit.chain import AuditRecord, chain_hash
from bastion.audit.checkpoints import CheckpointPolicy
from bastion.oauth.keys import KeyRing
from bastion.store.db import Database
from bastion.store.models import AuditEntry
from bastion.store.repos.audit import AuditLog, entry_record
from bastion.store.tenancy import SYSTEM
from bastion.vault.envelope import MasterKey, MasterKeys

BASE_US = 1_700_000_000_000_000
BASTION = str(Path(sys.executable).with_name("bastion"))


def record(n: int, *, kind: str = "mcp.request", correlation_id: str = "", at_us: int | None = None) -> AuditRecord:
    return AuditRecord(
        id=uuid.uuid4().hex,
        at_us=BASE_US + n * 1_000_000 if at_us is None else at_us,
        correlation_id=correlation_id or f"c{n}",
        kind=kind,
        target="list_stock",
        decision="allow",
        detail={"n": n},
    )


@dataclass
class Clock:
    """The checkpointer's clock, moved by hand (POSIX microseconds)."""

    now: int = BASE_US

    def __call__(self) -> int:
        return self.now


@dataclass
class Keys:
    """The live key ring as `Services` holds it: replaced on rotation, read through `signer`."""

    ring: KeyRing = field(default_factory=lambda: KeyRing.fresh(time.time()))

    def signer(self) -> KeyRing:
        return self.ring

    def rotate_and_prune(self) -> str:
        """A new active key; the old one is pruned from the ring at once. Returns the old kid."""
        old = self.ring.active.kid
        self.ring = self.ring.rotate(time.time()).prune(time.time() + 1)
        assert [key.kid for key in self.ring.keys] != [old]
        return old


def audit_log(
    db: Database, tmp_path: Path, keys: Keys, *, every: int = 5, seconds: float = 3600, clock: Clock | None = None
) -> AuditLog:
    """An AuditLog signing checkpoints every `every` records or after `seconds` (by `clock`)."""
    return AuditLog(
        db,
        tmp_path / f"journal-{uuid.uuid4().hex[:8]}",
        signer=keys.signer,
        checkpoints=CheckpointPolicy(every, seconds),
        clock=clock or Clock(),
    )


async def write(log: AuditLog, tenant_id: str, records: list[AuditRecord]) -> None:
    """Journal `records` and wait until they are in the store (one batch per call)."""
    durables = [log.record(tenant_id, r) for r in records]
    await log.flush()
    for durable in durables:
        await durable.wait()


async def rewrite_tail(db: Database, tenant_id: str, from_seq: int) -> None:
    """What a database writer without the key can do: change record `from_seq`, recompute every
    hash after it so each link holds, and move the head to the new last hash."""
    async with db.session(SYSTEM) as session:
        await session.execute(
            text("UPDATE audit_records SET target = 'delete_everything' WHERE tenant_id = :t AND seq = :s"),
            {"t": tenant_id, "s": from_seq},
        )
    async with db.session(SYSTEM) as session:
        rows = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.tenant_id == tenant_id, AuditEntry.seq >= from_seq)
                .order_by(AuditEntry.seq)
            )
        ).all()
        prev = rows[0].prev_hash
        for row in rows:
            row.prev_hash, row.hash = prev, chain_hash(prev, entry_record(row))
            prev = row.hash
        await session.execute(
            text("UPDATE audit_heads SET hash = :h WHERE tenant_id = :t"), {"h": prev, "t": tenant_id}
        )


def attacker_vault() -> MasterKeys:
    return MasterKeys(MasterKey.generate())


def cli_env(database_url: str, master_key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(BASTION_DATABASE_URL=database_url, BASTION_LOG_LEVEL="warning")
    if master_key is not None:
        env["BASTION_MASTER_KEY"] = master_key
    return env


def bastion(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BASTION, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
