"""Following the audit trail live: the records each chain gains, as they reach the store.

Polled by (tenant, seq): a chain's head and its records are committed together, so once a head at
seq N is read, every record up to N can be read too, and each tenant's cursor moves to its head
whether or not the records in between matched the filters. Each tenant's records come in chain
order; between tenants, in the order the polls find them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
from sqlalchemy import Select, select

from bastion.store.db import Database
from bastion.store.models import AuditEntry, AuditHead
from bastion.store.repos.audit_search import entries_where
from bastion.store.tenancy import SYSTEM

__all__ = ["TailQuery", "follow"]


@dataclass(frozen=True, slots=True)
class TailQuery:
    """Which records to follow (each filter given must match), and where to start: by default with
    the records that come after it starts; `since_seq`: each chain from that record on; `last`: the
    newest `last` matching records first."""

    tenant_id: str | None = None
    kind: str | None = None
    correlation_id: str | None = None
    since_seq: int | None = None
    last: int | None = None


async def follow(
    db: Database,
    query: TailQuery,
    *,
    poll: float = 0.5,
    chunk: int = 500,
    on_ready: Callable[[], None] | None = None,
) -> AsyncIterator[AuditEntry]:
    """Every matching record, from the start `query` asks for, then as chains grow (never returns).
    `on_ready` is called once where the follow starts is fixed: any record appended later comes."""
    cursors = await _heads(db, query)
    fresh = 0  # where the cursor of a chain that starts later begins: its every record is new
    if query.since_seq is not None:
        fresh = max(0, query.since_seq - 1)
        cursors = dict.fromkeys(cursors, fresh)
    if on_ready is not None:
        on_ready()
    if query.since_seq is None and query.last:
        for entry in await _newest(db, query, cursors):
            yield entry
    while True:
        for tenant_id, head_seq in (await _heads(db, query)).items():
            cursor = cursors.get(tenant_id, fresh)
            while cursor < head_seq:
                rows = await _after(db, query, tenant_id, cursor, head_seq, chunk)
                for row in rows:
                    yield row
                cursor = rows[-1].seq if len(rows) == chunk else head_seq
            cursors[tenant_id] = cursor
        await anyio.sleep(poll)


def _matching(query: TailQuery) -> Select[AuditEntry]:
    return entries_where(
        (AuditEntry.tenant_id, query.tenant_id),
        (AuditEntry.kind, query.kind),
        (AuditEntry.correlation_id, query.correlation_id),
    )


async def _heads(db: Database, query: TailQuery) -> dict[str, int]:
    statement = select(AuditHead.tenant_id, AuditHead.seq)
    if query.tenant_id is not None:
        statement = statement.where(AuditHead.tenant_id == query.tenant_id)
    async with db.session(SYSTEM) as session:
        return {tenant_id: seq for tenant_id, seq in (await session.execute(statement)).all()}


async def _after(db: Database, query: TailQuery, tenant_id: str, after: int, upto: int, chunk: int) -> list[AuditEntry]:
    statement = (
        _matching(query)
        .where(AuditEntry.tenant_id == tenant_id, AuditEntry.seq > after, AuditEntry.seq <= upto)
        .order_by(AuditEntry.seq)
        .limit(chunk)
    )
    async with db.session(SYSTEM) as session:
        return list((await session.scalars(statement)).all())


async def _newest(db: Database, query: TailQuery, cursors: dict[str, int]) -> list[AuditEntry]:
    """The newest `query.last` matching records up to the heads the follow starts from, oldest first."""
    statement = _matching(query).order_by(AuditEntry.at_us.desc(), AuditEntry.seq.desc()).limit(query.last or 0)
    async with db.session(SYSTEM) as session:
        rows = (await session.scalars(statement)).all()
    return [row for row in reversed(rows) if row.seq <= cursors.get(row.tenant_id, 0)]
