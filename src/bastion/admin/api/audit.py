"""The audit trail, read-only: search, follow one correlation id, export JSON Lines.

There is no route that changes or deletes a record (the trail is append-only); each tenant
reads its own chain (a platform administrator another tenant's with `X-Bastion-Tenant`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from bastion.admin.deps import AuditRead
from bastion.store.repos.audit_search import AuditQuery, export_lines, record_out, search

MAX_US = 2**63 - 1  # the stored times are 64-bit integers: a larger bound is a 422, not a database overflow

__all__ = ["router"]

router = APIRouter(prefix="/audit", tags=["audit"])


def _query(
    correlation_id: Annotated[str | None, Query(max_length=128)] = None,
    principal: Annotated[str | None, Query(max_length=255, description="user id")] = None,
    target: Annotated[str | None, Query(max_length=512, description="tool or prompt name, resource URI")] = None,
    decision: Annotated[str | None, Query(pattern="^(allow|deny|error)$")] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    since_us: Annotated[int | None, Query(ge=0, le=MAX_US, description="from (POSIX microseconds)")] = None,
    until_us: Annotated[int | None, Query(ge=0, le=MAX_US, description="before (POSIX microseconds)")] = None,
    after_seq: Annotated[
        int | None, Query(ge=0, le=MAX_US, description="after this record of the chain (the last `seq` read)")
    ] = None,
) -> AuditQuery:
    return AuditQuery(correlation_id, principal, target, decision, kind, since_us, until_us, after_seq)


Filters = Annotated[AuditQuery, Depends(_query)]


@router.get("/records")
async def records(
    request: Request, actor: AuditRead, filters: Filters, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    """The newest matching records, newest first. `?correlation_id=` follows one request end to end.
    With `?after_seq=` (the last `seq` read), a cursor's page: the first records after it, in chain order."""
    db = request.app.state.services.db
    return [record_out(entry) for entry in await search(db, actor.scope, filters, limit=limit)]


@router.get("/export")
async def export_jsonl(request: Request, actor: AuditRead, filters: Filters) -> StreamingResponse:
    """Every matching record in chain order (the order they were stored), one JSON object per line
    (for a SIEM). `?after_seq=` with the last `seq` read pulls what came since, records stored late
    with older times included; an unfiltered export verifies with `bastion audit verify --file`."""
    db = request.app.state.services.db
    return StreamingResponse(export_lines(db, actor.scope, filters), media_type="application/x-ndjson")
