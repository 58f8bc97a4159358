"""The audit trail in the store: appended in batches to each tenant's hash chain, verified by walking it.

`AuditLog.record` queues a record and returns a `Durable` the caller may await: it is set once
the record is committed (or, with the store unreachable, written and fsync'ed to the local spool
file, replayed into the store in order before anything newer). Waiting is group commit: the
writer takes everything queued, appends it in one transaction per batch, and wakes every waiter
at once, so a busy gateway pays one commit per batch, not per call.

Appending locks the tenant's chain head (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite has one
writer), so replicas sharing a database extend one chain without forks.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import anyio
import structlog
from sqlalchemy import Select, Table, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bastion.audit.chain import GENESIS, AuditRecord, Break, chain_hash, verify
from bastion.store.db import Database
from bastion.store.models import AuditEntry, AuditHead
from bastion.store.tenancy import SYSTEM, Tenancy

__all__ = ["AuditLog", "AuditQuery", "Durable", "entry_record", "export", "search", "verify_chain"]

log = structlog.get_logger(__name__)

_ENTRIES = cast(Table, AuditEntry.__table__)
_FIELDS = tuple(AuditRecord.__dataclass_fields__)


class Durable:
    """Set when its record is committed to the store or spooled to disk."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


@dataclass(slots=True)
class _Queued:
    tenant_id: str
    record: AuditRecord
    durable: Durable


def entry_record(entry: AuditEntry) -> AuditRecord:
    """The chained record back from its row (what its hash covers)."""
    return AuditRecord(**{name: getattr(entry, name) for name in _FIELDS})


class AuditLog:
    def __init__(self, db: Database, spool: Path, *, batch_size: int = 500, max_queue: int = 100_000) -> None:
        self._db = db
        self._spool = spool
        self._batch_size = batch_size
        self._queue: deque[_Queued] = deque()
        self._max_queue = max_queue
        self._ready: anyio.Event | None = None
        self.spooled = 0  # records written to the spool file since start

    def record(self, tenant_id: str, record: AuditRecord) -> Durable:
        durable = Durable()
        if len(self._queue) >= self._max_queue:
            # Never dropped: the caller waits on it like any other; the writer catches up.
            log.warning("audit_queue_long", queued=len(self._queue))
        self._queue.append(_Queued(tenant_id, record, durable))
        if self._ready is not None:
            self._ready.set()
        return durable

    async def run(self) -> None:
        await self._replay_spool()
        while True:
            self._ready = anyio.Event()
            if not self._queue:
                await self._ready.wait()
            with anyio.CancelScope(shield=True):  # a batch taken off the queue is made durable
                await self.flush()

    async def flush(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            try:
                if self._spool.exists():
                    await self._replay_spool()  # older records first: the chain keeps their order
                await self._append(batch)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("audit_store_unavailable", records=len(batch), error=type(exc).__name__)
                self._write_spool(batch)
            for queued in batch:
                queued.durable.set()

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.flush()

    # --- the store ----------------------------------------------------------------------------
    async def _append(self, batch: list[_Queued]) -> None:
        by_tenant: dict[str, list[AuditRecord]] = {}
        for queued in batch:
            by_tenant.setdefault(queued.tenant_id, []).append(queued.record)
        for attempt in range(2):
            try:
                async with self._db.session(SYSTEM) as session:
                    for tenant_id, records in by_tenant.items():
                        head = await session.get(AuditHead, tenant_id, with_for_update=True)
                        if head is None:
                            head = AuditHead(tenant_id=tenant_id, seq=0, hash=GENESIS)
                            session.add(head)
                            await session.flush()
                        rows: list[dict[str, Any]] = []
                        seq, prev = head.seq, head.hash
                        for record in records:
                            seq += 1
                            digest = chain_hash(prev, record)
                            rows.append(
                                {
                                    **asdict(record),
                                    "tenant_id": tenant_id,
                                    "seq": seq,
                                    "prev_hash": prev,
                                    "hash": digest,
                                }
                            )
                            prev = digest
                        await session.execute(insert(_ENTRIES), rows)
                        head.seq, head.hash = seq, prev
                return
            except IntegrityError:
                if attempt:  # a second replica created the same head at once: once more, then give up
                    raise

    # --- the spool: durable while the store is unreachable ---------------------------------------
    def _write_spool(self, batch: list[_Queued]) -> None:
        self._spool.parent.mkdir(parents=True, exist_ok=True)
        with self._spool.open("a", encoding="utf-8") as handle:
            for queued in batch:
                handle.write(json.dumps({"tenant_id": queued.tenant_id, **asdict(queued.record)}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.spooled += len(batch)

    async def _replay_spool(self) -> None:
        if not self._spool.exists():
            return
        lines = self._spool.read_text(encoding="utf-8").splitlines()
        batch: list[_Queued] = []
        for line in lines:
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash while spooling: its call was never answered
            tenant_id = data.pop("tenant_id")
            batch.append(_Queued(tenant_id, AuditRecord(**data), Durable()))
        if batch:
            await self._append(batch)
        self._spool.unlink()
        log.info("audit_spool_replayed", records=len(batch))


async def verify_chain(db: Database, tenant_id: str, *, chunk: int = 2000) -> tuple[int, Break | None]:
    """(records checked, the first break or None) for one tenant's chain, against its stored head.
    Read in chunks, each verified from where the previous one ended."""
    checked, seq, prev = 0, 0, GENESIS
    while True:
        async with db.session(SYSTEM) as session:
            rows = (
                await session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.tenant_id == tenant_id, AuditEntry.seq > seq)
                    .order_by(AuditEntry.seq)
                    .limit(chunk)
                )
            ).all()
        links = [(row.seq, row.prev_hash, row.hash, entry_record(row).canonical()) for row in rows]
        broken = verify(links, start_seq=seq + 1, start_hash=prev)
        if broken is not None:
            return checked + broken.seq - seq - 1, broken
        checked += len(rows)
        if rows:
            seq, prev = rows[-1].seq, rows[-1].hash
        if len(rows) < chunk:
            break
    async with db.session(SYSTEM) as session:
        head = await session.get(AuditHead, tenant_id)
    if head is not None and (head.seq, head.hash) != (seq, prev):
        return checked, Break(
            seq + 1, f"the chain ends at record {seq} but its head is at {head.seq}: records were removed"
        )
    return checked, None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Search filters; every one given must match. Times are POSIX microseconds."""

    correlation_id: str | None = None
    principal: str | None = None
    target: str | None = None
    decision: str | None = None
    kind: str | None = None
    since_us: int | None = None
    until_us: int | None = None


def _filtered(query: AuditQuery) -> Select[AuditEntry]:
    statement = select(AuditEntry)
    for column, value in (
        (AuditEntry.correlation_id, query.correlation_id),
        (AuditEntry.principal, query.principal),
        (AuditEntry.target, query.target),
        (AuditEntry.decision, query.decision),
        (AuditEntry.kind, query.kind),
    ):
        if value is not None:
            statement = statement.where(column == value)
    if query.since_us is not None:
        statement = statement.where(AuditEntry.at_us >= query.since_us)
    if query.until_us is not None:
        statement = statement.where(AuditEntry.at_us < query.until_us)
    return statement


async def search(db: Database, scope: Tenancy, query: AuditQuery, *, limit: int) -> list[AuditEntry]:
    """The newest `limit` records that match, newest first (the scope keeps each tenant to its own)."""
    async with db.session(scope) as session:
        statement = _filtered(query).order_by(AuditEntry.at_us.desc(), AuditEntry.seq.desc()).limit(limit)
        return list((await session.scalars(statement)).all())


async def export(db: Database, scope: Tenancy, query: AuditQuery, *, chunk: int = 1000) -> AsyncIterator[AuditEntry]:
    """Every matching record, oldest first, read in chunks (for JSON Lines export to a SIEM)."""
    after: tuple[int, str] = (-1, "")
    while True:
        async with db.session(scope) as session:
            statement = (
                _filtered(query)
                .where((AuditEntry.at_us > after[0]) | ((AuditEntry.at_us == after[0]) & (AuditEntry.id > after[1])))
                .order_by(AuditEntry.at_us, AuditEntry.id)
                .limit(chunk)
            )
            rows = list((await session.scalars(statement)).all())
        for row in rows:
            yield row
        if len(rows) < chunk:
            return
        after = (rows[-1].at_us, rows[-1].id)
