"""Reading the audit trail: search (newest first) and export (in chain order, in chunks, as JSON
Lines for a SIEM), each within the tenancy scope it is given.

Export goes by (tenant, seq), not by time: a record's time is when its request happened, its seq
when it reached its tenant's chain, and records stored late (after a store outage, or from another
replica's queue) carry older times than records stored before them. In chain order an unfiltered
export verifies offline (`bastion audit verify --file`), and `after_seq` is a cursor that misses
nothing: a chain's records are committed with its head, under the head's lock, so once seq N is
read no record at or below N can appear later."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Select, select

from bastion.store.db import Database
from bastion.store.models import AuditEntry, AuditHead
from bastion.store.repos.audit_verify import entry_record
from bastion.store.tenancy import Tenancy

__all__ = ["AuditQuery", "entries_where", "export", "export_lines", "record_out", "search"]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Search filters; every one given must match. Times are POSIX microseconds; `after_seq`: only
    records after that position in their tenant's chain (the `seq` of the last record read)."""

    correlation_id: str | None = None
    principal: str | None = None
    target: str | None = None
    decision: str | None = None
    kind: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    after_seq: int | None = None


def entries_where(*equal: tuple[Any, str | None]) -> Select[AuditEntry]:
    """Audit entries whose columns equal the values given; a None value does not filter."""
    statement = select(AuditEntry)
    for column, value in equal:
        if value is not None:
            statement = statement.where(column == value)
    return statement


def _filtered(query: AuditQuery) -> Select[AuditEntry]:
    statement = entries_where(
        (AuditEntry.correlation_id, query.correlation_id),
        (AuditEntry.principal, query.principal),
        (AuditEntry.target, query.target),
        (AuditEntry.decision, query.decision),
        (AuditEntry.kind, query.kind),
    )
    if query.since_us is not None:
        statement = statement.where(AuditEntry.at_us >= query.since_us)
    if query.until_us is not None:
        statement = statement.where(AuditEntry.at_us < query.until_us)
    if query.after_seq is not None:
        statement = statement.where(AuditEntry.seq > query.after_seq)
    return statement


async def search(db: Database, scope: Tenancy, query: AuditQuery, *, limit: int) -> list[AuditEntry]:
    """The newest `limit` records that match, newest first (the scope keeps each tenant to its own);
    with `after_seq`, a cursor's page instead: the first `limit` after it, in chain order."""
    async with db.session(scope) as session:
        statement = _filtered(query)
        if query.after_seq is None:
            statement = statement.order_by(AuditEntry.at_us.desc(), AuditEntry.seq.desc())
        else:
            statement = statement.order_by(AuditEntry.tenant_id, AuditEntry.seq)
        return list((await session.scalars(statement.limit(limit))).all())


async def export(db: Database, scope: Tenancy, query: AuditQuery, *, chunk: int = 1000) -> AsyncIterator[AuditEntry]:
    """Every matching record in chain order (each tenant's by seq, tenants by id), read in chunks
    (for JSON Lines export to a SIEM). Each chunk is one range of one tenant's chain, read through
    the (tenant, seq) index: a page deep in a long chain costs what the first one does."""
    if scope.tenant_id is not None:
        tenants = [scope.tenant_id]
    else:
        async with db.session(scope) as session:
            tenants = list((await session.scalars(select(AuditHead.tenant_id).order_by(AuditHead.tenant_id))).all())
    for tenant_id in tenants:
        after = query.after_seq or 0
        while True:
            async with db.session(scope) as session:
                statement = (
                    _filtered(query)
                    .where(AuditEntry.tenant_id == tenant_id, AuditEntry.seq > after)
                    .order_by(AuditEntry.seq)
                    .limit(chunk)
                )
                rows = list((await session.scalars(statement)).all())
            for row in rows:
                yield row
            if len(rows) < chunk:
                break
            after = rows[-1].seq


def record_out(entry: AuditEntry) -> dict[str, Any]:
    """A stored record as the admin API and the console show and export it: the chained fields,
    then its link in the tenant's chain (tenant, seq, prev_hash, hash)."""
    link = {"tenant_id": entry.tenant_id, "seq": entry.seq, "prev_hash": entry.prev_hash, "hash": entry.hash}
    return entry_record(entry).fields() | link


async def export_lines(db: Database, scope: Tenancy, query: AuditQuery) -> AsyncIterator[bytes]:
    """`export` as JSON Lines (for a SIEM): one `record_out` object per line, in chain order."""
    async for entry in export(db, scope, query):
        yield orjson.dumps(record_out(entry)) + b"\n"
