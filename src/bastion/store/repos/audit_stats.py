"""Aggregates of the audit trail for the console's dashboard: traffic over time, denials, top callers.

Each figure is one GROUP BY over the indexed `at_us` range of one tenant, so the
dashboard costs a handful of queries however busy the gateway is.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from bastion.store.db import Database
from bastion.store.models import AuditEntry
from bastion.store.tenancy import Tenancy

__all__ = ["Bucket", "Overview", "overview"]

INBOUND = "mcp.request"
UPSTREAM = "upstream.call"


@dataclass(frozen=True, slots=True)
class Bucket:
    start_us: int
    allowed: int = 0
    denied: int = 0
    errors: int = 0
    upstream_calls: int = 0
    upstream_errors: int = 0
    upstream_latency_ms: float = 0.0  # mean over the bucket's upstream calls

    @property
    def requests(self) -> int:
        return self.allowed + self.denied + self.errors


@dataclass(frozen=True, slots=True)
class Overview:
    since_us: int
    bucket_us: int
    buckets: list[Bucket]
    denials: list[tuple[str, int]]  # reason, count
    tools: list[tuple[str, int]]  # tool name as clients call it, calls
    principals: list[tuple[str, int]]  # user id, requests

    @property
    def requests(self) -> int:
        return sum(b.requests for b in self.buckets)

    @property
    def denied(self) -> int:
        return sum(b.denied for b in self.buckets)

    @property
    def upstream_errors(self) -> int:
        return sum(b.upstream_errors for b in self.buckets)

    @property
    def upstream_latency_ms(self) -> float:
        calls = sum(b.upstream_calls for b in self.buckets)
        total = sum(b.upstream_latency_ms * b.upstream_calls for b in self.buckets)
        return total / calls if calls else 0.0


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.sum(case((condition, 1), else_=0))


async def overview(
    db: Database, scope: Tenancy, *, since_us: int, until_us: int, buckets: int = 24, top: int = 8
) -> Overview:
    """The window [since_us, until_us) cut into `buckets` equal slices, and the top lists over it."""
    bucket_us = max(1, -(-(until_us - since_us) // buckets))
    window = [AuditEntry.at_us >= since_us, AuditEntry.at_us < until_us]
    if scope.tenant_id is not None:  # the session's tenancy criteria say the same; stated for the reader
        window.append(AuditEntry.tenant_id == scope.tenant_id)
    index = ((AuditEntry.at_us - since_us) // bucket_us).label("bucket")
    inbound = AuditEntry.kind == INBOUND
    upstream = AuditEntry.kind == UPSTREAM
    series = (
        select(
            index,
            _count(inbound & (AuditEntry.decision == "allow")),
            _count(inbound & (AuditEntry.decision == "deny")),
            _count(inbound & (AuditEntry.decision == "error")),
            _count(upstream),
            _count(upstream & (AuditEntry.decision != "allow")),
            func.avg(case((upstream, AuditEntry.latency_us), else_=None)),
        )
        .where(*window, AuditEntry.kind.in_((INBOUND, UPSTREAM)))
        .group_by(index)
    )

    async with db.session(scope) as session:
        rows = {int(row[0]): row for row in (await session.execute(series)).all()}

        async def top_of(column: InstrumentedAttribute[str], *conditions: ColumnElement[bool]) -> list[tuple[str, int]]:
            counted = func.count().label("n")
            statement = (
                select(column, counted)
                .where(*window, *conditions)
                .group_by(column)
                .order_by(counted.desc(), column)
                .limit(top)
            )
            return [(str(value), int(n)) for value, n in (await session.execute(statement)).all()]

        denials = await top_of(AuditEntry.reason, AuditEntry.decision == "deny", AuditEntry.kind != UPSTREAM)
        tools = await top_of(AuditEntry.target, inbound, AuditEntry.method == "tools/call")
        principals = await top_of(AuditEntry.principal, inbound, AuditEntry.principal != "")
    series_out = []
    for number in range(buckets):
        row = rows.get(number)
        start = since_us + number * bucket_us
        if row is None:
            series_out.append(Bucket(start))
            continue
        latency = row[6]
        series_out.append(
            Bucket(
                start,
                allowed=int(row[1] or 0),
                denied=int(row[2] or 0),
                errors=int(row[3] or 0),
                upstream_calls=int(row[4] or 0),
                upstream_errors=int(row[5] or 0),
                upstream_latency_ms=float(latency) / 1000 if latency is not None else 0.0,
            )
        )
    return Overview(since_us, bucket_us, series_out, denials, tools, principals)
