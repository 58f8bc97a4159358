"""Reading the audit trail: search (newest first) and export (oldest first, in chunks, as JSON
Lines for a SIEM), each within the tenancy scope it is given."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Select, select

from bastion.store.db import Database
from bastion.store.models import AuditEntry
from bastion.store.repos.audit_verify import entry_record
from bastion.store.tenancy import Tenancy

__all__ = ["AuditQuery", "entries_where", "export", "export_lines", "record_out", "search"]


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


def record_out(entry: AuditEntry) -> dict[str, Any]:
    """A stored record as the admin API and the console show and export it: the chained fields,
    then its link in the tenant's chain (tenant, seq, prev_hash, hash)."""
    link = {"tenant_id": entry.tenant_id, "seq": entry.seq, "prev_hash": entry.prev_hash, "hash": entry.hash}
    return entry_record(entry).fields() | link


async def export_lines(db: Database, scope: Tenancy, query: AuditQuery) -> AsyncIterator[bytes]:
    """`export` as JSON Lines (for a SIEM): one `record_out` object per line, oldest first."""
    async for entry in export(db, scope, query):
        yield orjson.dumps(record_out(entry)) + b"\n"
