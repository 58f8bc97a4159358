"""Retention: a tenant's oldest audit records are exported to a file, then pruned from the store.

The cut is only ever made at a signed checkpoint (the newest whose record is older than the cutoff),
so the chain kept starts at a signed anchor and `verify_chain` goes on verifying it. In order:

1. Each chain is verified first; a broken one is not pruned (its records are the evidence).
2. The records up to the anchor go to the export file as JSON lines with seq, prev_hash and hash
   (`bastion.audit.exported`: the file verifies offline), which is fsync'ed before anything goes.
3. One transaction per tenant, holding the chain head's lock: the records are deleted, with the
   checkpoints before the anchor, and an `audit.prune` record naming the range and the export
   file's SHA-256 is appended to the same chain, with a checkpoint signing it at once.

Only `bastion audit prune` calls this: no API or UI route deletes audit records.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import delete, func, select

from bastion.audit.chain import AuditRecord
from bastion.audit.exported import export_line
from bastion.audit.sink import now_us
from bastion.errors import BastionError
from bastion.store.db import Database
from bastion.store.models import AuditCheckpoint, AuditEntry
from bastion.store.repos.audit import extend_chain, lock_head
from bastion.store.repos.audit_checkpoints import Checkpointer
from bastion.store.repos.audit_verify import PRUNE_KIND, entry_record, verify_report
from bastion.store.tenancy import SYSTEM

__all__ = ["Pruned", "prune"]


@dataclass(frozen=True, slots=True)
class Pruned:
    """What a prune did to one tenant's chain: records `first_seq..through_seq` went (none when
    `through_seq` is 0, and `reason` says why)."""

    tenant_id: str
    first_seq: int
    through_seq: int = 0
    reason: str = ""

    @property
    def records(self) -> int:
        return self.through_seq - self.first_seq + 1 if self.through_seq else 0


async def prune(
    db: Database, checkpointer: Checkpointer | None, tenants: list[str], *, before_us: int, export: Path
) -> tuple[list[Pruned], str]:
    """Prune each tenant's chain up to its newest checkpoint before `before_us`, exporting what goes
    to `export` (created; never overwritten). Returns what happened per tenant and the file's SHA-256
    ("" when nothing was pruned and no file was written)."""
    plans = [await _plan(db, tenant_id, before_us) for tenant_id in tenants]
    cuts = [plan for plan in plans if plan.through_seq]
    if not cuts:
        return plans, ""
    digest = await _export(db, cuts, export)
    for plan in cuts:
        await _cut(db, checkpointer, plan, before_us=before_us, export=export, digest=digest)
    return plans, digest


async def _plan(db: Database, tenant_id: str, before_us: int) -> Pruned:
    report = await verify_report(db, tenant_id)
    if report.broken is not None:
        return Pruned(
            tenant_id,
            report.start_seq,
            reason=f"the chain is broken at record {report.broken.seq} (bastion audit verify): it is kept whole",
        )
    async with db.session(SYSTEM) as session:
        anchor = await session.scalar(
            select(func.max(AuditCheckpoint.seq))
            .join(
                AuditEntry,
                (AuditEntry.tenant_id == AuditCheckpoint.tenant_id) & (AuditEntry.seq == AuditCheckpoint.seq),
            )
            .where(
                AuditCheckpoint.tenant_id == tenant_id,
                AuditCheckpoint.seq >= report.start_seq,
                AuditEntry.at_us < before_us,
            )
        )
    if anchor is None:
        return Pruned(tenant_id, report.start_seq, reason="no signed checkpoint is older than the cutoff")
    return Pruned(tenant_id, report.start_seq, anchor)


async def _export(db: Database, cuts: list[Pruned], path: Path, *, chunk: int = 1000) -> str:
    """Write the records that go, fsync the file and its directory; the file's SHA-256."""
    digest = hashlib.sha256()
    try:  # never overwrites an earlier export; readable by its owner only, like the store
        file = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
    except FileExistsError:
        raise BastionError(f"{path} exists: export to a new file") from None
    with file:
        for plan in cuts:
            after = plan.first_seq - 1
            while after < plan.through_seq:
                async with db.session(SYSTEM) as session:
                    rows = (
                        await session.scalars(
                            select(AuditEntry)
                            .where(
                                AuditEntry.tenant_id == plan.tenant_id,
                                AuditEntry.seq > after,
                                AuditEntry.seq <= plan.through_seq,
                            )
                            .order_by(AuditEntry.seq)
                            .limit(chunk)
                        )
                    ).all()
                if not rows:
                    raise BastionError(f"records of {plan.tenant_id} after {after} vanished during the export")
                for row in rows:
                    line = export_line(row.tenant_id, row.seq, row.prev_hash, row.hash, entry_record(row))
                    digest.update(line)
                    file.write(line)
                after = rows[-1].seq
        _sync(file)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the file's name is durable too
    finally:
        os.close(directory)
    return digest.hexdigest()


def _sync(file: IO[bytes]) -> None:
    file.flush()
    os.fsync(file.fileno())


async def _cut(
    db: Database, checkpointer: Checkpointer | None, plan: Pruned, *, before_us: int, export: Path, digest: str
) -> None:
    """Delete the exported records and append the prune's own record, in one transaction."""
    now = now_us()
    async with db.session(SYSTEM) as session:
        head = await lock_head(session, plan.tenant_id, now_us=now)
        first = await session.scalar(select(func.min(AuditEntry.seq)).where(AuditEntry.tenant_id == plan.tenant_id))
        if first != plan.first_seq:  # another prune ran meanwhile: this export no longer fits
            raise BastionError(f"the chain of {plan.tenant_id} changed its start during the prune; nothing deleted")
        await session.execute(
            delete(AuditEntry).where(AuditEntry.tenant_id == plan.tenant_id, AuditEntry.seq <= plan.through_seq)
        )
        await session.execute(
            delete(AuditCheckpoint).where(
                AuditCheckpoint.tenant_id == plan.tenant_id, AuditCheckpoint.seq < plan.through_seq
            )
        )
        record = AuditRecord(
            id=uuid.uuid4().hex,
            at_us=now,
            correlation_id=uuid.uuid4().hex,
            kind=PRUNE_KIND,
            principal="cli",
            client="cli",
            method="audit prune",
            decision="allow",
            status="ok",
            detail={
                "from_seq": plan.first_seq,
                "through_seq": plan.through_seq,
                "records": plan.records,
                "before_us": before_us,
                "export_file": str(export),
                "export_sha256": digest,
            },
        )
        await extend_chain(session, head, [record], checkpointer, force_checkpoint=True)
