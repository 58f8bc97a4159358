"""Verifying a tenant's audit chain in the store: every link, every signed checkpoint, the head.

The walk starts at the chain's genesis, or after a prune at the signed checkpoint the prune kept as
its anchor (`bastion.store.repos.audit_retention`), reads records in chunks, and checks each link
(`bastion.audit.chain.verify`) and each checkpoint it passes (`bastion.audit.checkpoints.check`):
a record edited in place breaks its link; a tail rewritten with every hash recomputed and the head
moved breaks at the first checkpoint after the change, which then bounds where the change began.
Records a writer appends while the walk runs are walked too, so a live gateway is never reported
broken for growing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.audit.chain import GENESIS, AuditRecord, Break, verify
from bastion.audit.checkpoints import TrustedKeys, check
from bastion.store.db import Database
from bastion.store.models import AuditCheckpoint, AuditEntry, AuditHead
from bastion.store.repos.audit_checkpoints import checkpoint_of, load_trusted_keys
from bastion.store.tenancy import SYSTEM

__all__ = ["PRUNE_KIND", "ChainReport", "entry_record", "verify_chain", "verify_report"]

PRUNE_KIND = "audit.prune"  # the record a prune appends; the chain's start is found in the newest one

_FIELDS = tuple(AuditRecord.__dataclass_fields__)


def entry_record(entry: AuditEntry) -> AuditRecord:
    """The chained record back from its row (what its hash covers)."""
    return AuditRecord(**{name: getattr(entry, name) for name in _FIELDS})


async def verify_chain(db: Database, tenant_id: str, *, chunk: int = 2000) -> tuple[int, Break | None]:
    """(records checked, the first break or None) for one tenant's chain: `verify_report`, short."""
    report = await verify_report(db, tenant_id, chunk=chunk)
    return report.checked, report.broken


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What verifying one tenant's chain found."""

    checked: int  # records verified (before the break, if any)
    broken: Break | None
    start_seq: int = 1  # the first record kept: after a prune, the one after its signed anchor
    head_seq: int = 0
    checkpoints: int = 0  # checkpoints whose signature and record both held (the anchor included)
    last_checkpoint: int = 0  # the newest of them; records after it are not signed yet
    keys_sealed: bool = True  # False: no master key, checkpoint keys are trusted as stored


async def verify_report(db: Database, tenant_id: str, *, chunk: int = 2000) -> ChainReport:
    """Walk one tenant's chain in chunks from its start (the genesis, or a prune's signed anchor),
    check every link, every checkpoint on the way, and that the stored head is where the walk ends."""
    async with db.session(SYSTEM) as session:
        trusted = await load_trusted_keys(session, db.vault)
        start = await _chain_start(session, tenant_id, trusted)
    if isinstance(start, Break):
        return ChainReport(0, start, keys_sealed=trusted.sealed)
    walk = _Walk(tenant_id, trusted, *start)
    broken = await walk.run(db, chunk)
    return ChainReport(
        walk.checked if broken is None else walk.checked_before(broken),
        broken,
        start_seq=start[0] + 1,
        head_seq=walk.head_seq,
        checkpoints=walk.checkpoints,
        last_checkpoint=walk.last_good,
        keys_sealed=trusted.sealed,
    )


async def _chain_start(session: AsyncSession, tenant_id: str, trusted: TrustedKeys) -> tuple[int, str] | Break:
    """(seq, hash) the chain follows from: the genesis, or after a prune the signed checkpoint it
    kept as anchor, which the newest prune record must name (so records cut away without a prune,
    back to some checkpoint, are not taken for one)."""
    first = await session.scalar(select(func.min(AuditEntry.seq)).where(AuditEntry.tenant_id == tenant_id))
    if first is None:
        head = await session.get(AuditHead, tenant_id)
        first = 1 if head is None else head.seq + 1
    if first == 1:
        return 0, GENESIS
    anchor_seq = first - 1
    anchor = await session.scalar(
        select(AuditCheckpoint).where(AuditCheckpoint.tenant_id == tenant_id, AuditCheckpoint.seq == anchor_seq)
    )
    if anchor is None:
        return Break(1, f"records 1 to {anchor_seq} are missing and no signed checkpoint anchors the chain there")
    reason = check(anchor.signature, checkpoint_of(anchor), trusted)
    if reason is not None:
        return Break(first, f"the chain starts after record {anchor_seq}, whose checkpoint fails: {reason}")
    pruned = (
        await session.execute(
            select(AuditEntry.seq, AuditEntry.hash, AuditEntry.detail)
            .where(AuditEntry.tenant_id == tenant_id, AuditEntry.kind == PRUNE_KIND)
            .order_by(AuditEntry.seq.desc())
            .limit(1)
        )
    ).first()
    if pruned is None or pruned.detail.get("through_seq") != anchor_seq:
        return Break(
            first,
            f"the chain starts after record {anchor_seq} but no {PRUNE_KIND} record says it was pruned "
            "there: records were removed",
        )
    # A prune signs a checkpoint at its own record: one written by anyone else (with the database
    # alone, no signing key) to cover records it removed has none.
    pin = await session.scalar(
        select(AuditCheckpoint).where(AuditCheckpoint.tenant_id == tenant_id, AuditCheckpoint.seq == pruned.seq)
    )
    if pin is None or pin.hash != pruned.hash or check(pin.signature, checkpoint_of(pin), trusted) is not None:
        return Break(
            pruned.seq,
            f"the {PRUNE_KIND} record {pruned.seq} is not pinned by a signed checkpoint: no prune made it, "
            f"and records 1 to {anchor_seq} were removed",
        )
    return anchor_seq, anchor.hash


class _Walk:
    """One verification walk: where it stands, and the checkpoints that held on the way."""

    def __init__(self, tenant_id: str, trusted: TrustedKeys, anchor_seq: int, anchor_hash: str) -> None:
        self.tenant_id, self.trusted = tenant_id, trusted
        self.anchor_seq = anchor_seq
        self.seq, self.prev = anchor_seq, anchor_hash
        self.checkpoints = 1 if anchor_seq else 0
        self.last_good = anchor_seq
        self.head_seq = 0
        self.failed_checkpoint = False

    @property
    def checked(self) -> int:
        return self.seq - self.anchor_seq

    def checked_before(self, broken: Break) -> int:
        if self.failed_checkpoint:  # proven: what the last checkpoint that holds pins
            return self.last_good - self.anchor_seq
        return max(0, broken.seq - 1 - self.anchor_seq)

    async def run(self, db: Database, chunk: int) -> Break | None:
        while True:
            broken = await self._records(db, chunk)
            if broken is not None:
                return broken
            async with db.session(SYSTEM) as session:
                # The checkpoint first: one a writer commits meanwhile comes with a head past it.
                past = await session.scalar(
                    select(func.min(AuditCheckpoint.seq)).where(
                        AuditCheckpoint.tenant_id == self.tenant_id, AuditCheckpoint.seq > self.seq
                    )
                )
                head = await session.get(AuditHead, self.tenant_id)
                more = await session.scalar(
                    select(func.count()).where(AuditEntry.tenant_id == self.tenant_id, AuditEntry.seq > self.seq)
                )
            self.head_seq = head.seq if head is not None else 0
            if more:  # appended while the walk went on: walk on
                continue
            return self._end(past, head)

    def _end(self, past: int | None, head: AuditHead | None) -> Break | None:
        if past is not None and (head is None or head.seq < past):
            return Break(
                self.seq + 1,
                f"records {self.seq + 1} to {past} are missing: the signed checkpoint at record {past} is past "
                "the chain's end (records and the head were removed)",
            )
        if head is not None and (head.seq, head.hash) != (self.seq, self.prev):
            return Break(
                self.seq + 1, f"the chain ends at record {self.seq} but its head is at {head.seq}: records were removed"
            )
        return None

    async def _records(self, db: Database, chunk: int) -> Break | None:
        while True:
            async with db.session(SYSTEM) as session:
                rows = (
                    await session.scalars(
                        select(AuditEntry)
                        .where(AuditEntry.tenant_id == self.tenant_id, AuditEntry.seq > self.seq)
                        .order_by(AuditEntry.seq)
                        .limit(chunk)
                    )
                ).all()
                pins: list[AuditCheckpoint] = []
                if rows:
                    pins = list(
                        await session.scalars(
                            select(AuditCheckpoint)
                            .where(
                                AuditCheckpoint.tenant_id == self.tenant_id,
                                AuditCheckpoint.seq > self.seq,
                                AuditCheckpoint.seq <= rows[-1].seq,
                            )
                            .order_by(AuditCheckpoint.seq)
                        )
                    )
            links = [(row.seq, row.prev_hash, row.hash, entry_record(row).canonical()) for row in rows]
            broken = self._pins(
                pins, {row.seq: row.hash for row in rows}, verify(links, start_seq=self.seq + 1, start_hash=self.prev)
            )
            if broken is not None:
                return broken
            if rows:
                self.seq, self.prev = rows[-1].seq, rows[-1].hash
            if len(rows) < chunk:
                return None

    def _pins(self, pins: list[AuditCheckpoint], hashes: dict[int, str], broken: Break | None) -> Break | None:
        """The first checkpoint that fails, when it comes before the chunk's first broken link."""
        for pin in pins:
            if broken is not None and pin.seq >= broken.seq:
                break
            reason = check(pin.signature, checkpoint_of(pin), self.trusted)
            if reason is None and hashes.get(pin.seq) != pin.hash:
                reason = (
                    f"its record's hash is not the one it signed, so the chain was rewritten (every hash "
                    f"recomputed): the first changed record is one of {self.last_good + 1} to {pin.seq}"
                    + (f", the checkpoint at record {self.last_good} still holds" if self.last_good else "")
                )
            if reason is not None:
                self.failed_checkpoint = True
                return Break(pin.seq, f"the signed checkpoint at record {pin.seq} fails: {reason}")
            self.checkpoints, self.last_good = self.checkpoints + 1, pin.seq
        return broken
