"""The audit trail in the console: search, one request's timeline, JSON Lines export, chain verification.

Read-only like the API (`bastion.admin.api.audit`), with the same permission (audit:read),
the same filters and the same export format (`record_out`), for the viewer's tenant. The
chain is verified only when asked (`?verify=1`): the walk reads the whole chain.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from bastion.admin.deps import users_of
from bastion.console.render import page
from bastion.console.route import ConsoleRoute
from bastion.console.viewer import CurrentViewer, Viewer
from bastion.errors import BadRequest, NotFound
from bastion.store.db import Database
from bastion.store.models import AuditEntry
from bastion.store.repos.audit import verify_report
from bastion.store.repos.audit_search import AuditQuery, export_lines, search

__all__ = ["router", "to_us", "user_names"]

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)

KINDS = (
    "mcp.request",
    "upstream.call",
    "api.request",
    "oauth.request",
    "console.request",
    "cli.command",
    "audit.prune",
)
LIMITS = (50, 100, 250, 500, 1000)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TONES = {"allow": "ok", "deny": "bad", "error": "warn"}
_TRACE_LIMIT = 1000

Text = Annotated[str | None, Query(max_length=512)]


def to_us(value: str) -> int:
    """A datetime-local value (`2025-01-31T14:05`, seconds optional), UTC unless it names an offset,
    in POSIX microseconds."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class _Search:
    """The filters as the form sent them (shown back), as the store reads them, and their errors."""

    values: dict[str, str]
    query: AuditQuery
    errors: dict[str, str]

    def link(self, path: str) -> str:
        """`path` with the same filters (the export link)."""
        given = {key: value for key, value in self.values.items() if value}
        return f"{path}?{urlencode(given)}" if given else path


@dataclass(frozen=True, slots=True)
class _Asked:
    """The search form's fields as the link carries them (the audit page and its export share them)."""

    correlation_id: str | None
    principal: str | None
    target: str | None
    decision: str | None
    kind: str | None
    since: str | None
    until: str | None


def _asked(
    correlation_id: Text = None,
    principal: Text = None,
    target: Text = None,
    decision: Literal["", "allow", "deny", "error"] | None = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
) -> _Asked:
    return _Asked(correlation_id, principal, target, decision, kind, since, until)


Asked = Annotated[_Asked, Depends(_asked)]


def _search(names: dict[str, str], asked: _Asked) -> _Search:
    values = {
        "correlation_id": (asked.correlation_id or "").strip(),
        "principal": (asked.principal or "").strip(),
        "target": (asked.target or "").strip(),
        "decision": asked.decision or "",
        "kind": (asked.kind or "").strip(),
        "since": (asked.since or "").strip(),
        "until": (asked.until or "").strip(),
    }
    errors: dict[str, str] = {}
    times: dict[str, int | None] = {}
    for name in ("since", "until"):
        times[name] = None
        if values[name]:
            try:
                times[name] = to_us(values[name])
            except ValueError:
                errors[name] = f"{values[name]!r} is not a date and time (YYYY-MM-DDTHH:MM, UTC)"
    if not errors and times["since"] is not None and times["until"] is not None and times["until"] <= times["since"]:
        errors["until"] = "“until” must come after “from”"
    ids = {name: user_id for user_id, name in names.items()}
    query = AuditQuery(
        values["correlation_id"] or None,
        ids.get(values["principal"], values["principal"]) or None,  # a username, or the user id itself
        values["target"] or None,
        values["decision"] or None,
        values["kind"] or None,
        times["since"],
        times["until"],
    )
    return _Search(values, query, errors)


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _row(entry: AuditEntry) -> dict[str, Any]:
    """One record for a page: its fields, with the times and the latency readable."""
    at = _at(entry.at_us)
    return {
        "entry": entry,
        "iso": at.isoformat(),
        "time": at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d}",
        "latency_ms": f"{entry.latency_us / 1000:.1f}",
        "tone": _TONES.get(entry.decision, ""),
    }


async def user_names(request: Request, viewer: Viewer) -> dict[str, str]:
    """User id → username, for people who may read the users (records name people by id only)."""
    if not viewer.may("users:read"):
        return {}
    return {user.id: user.username for user in await users_of(request).list(viewer.actor("users:read"))}


_VERIFY_EVERY_SECONDS = 10.0


@dataclass
class _Verification:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    at: float = float("-inf")  # monotonic
    wall: datetime | None = None
    report: Any = None


async def _verified(request: Request, db: Database, tenant_id: str) -> tuple[Any, datetime | None]:
    """The tenant's chain verified, at most once every `_VERIFY_EVERY_SECONDS` and one walk at a
    time: a walk reads the whole trail, and a GET (a reloading tab, a link) must not make the store
    read it over and over. A request within that time gets the last walk's report and its time."""
    state = request.app.state
    if not hasattr(state, "audit_verifications"):
        state.audit_verifications = {}
    memo: _Verification = state.audit_verifications.setdefault(tenant_id, _Verification())
    async with memo.lock:
        if time.monotonic() - memo.at >= _VERIFY_EVERY_SECONDS:
            memo.report = await verify_report(db, tenant_id)
            memo.at, memo.wall = time.monotonic(), datetime.now(UTC)
    return memo.report, memo.wall


def _db(request: Request) -> Database:
    db: Database = request.app.state.services.db
    return db


@router.get("/audit")
async def audit(
    request: Request,
    viewer: CurrentViewer,
    asked: Asked,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    verify: bool = False,
) -> Response:
    """The newest matching records, newest first; `verify=1` walks the tenant's chain too."""
    actor = viewer.actor("audit:read")
    names = await user_names(request, viewer)
    found = _search(names, asked)
    db = _db(request)
    entries = [] if found.errors else await search(db, actor.scope, found.query, limit=limit)
    report, verified_at = await _verified(request, db, actor.tenant_id) if verify else (None, None)
    every = request.app.state.services.settings.audit_checkpoint_every
    return page(
        request,
        "audit.html",
        viewer=viewer,
        status=422 if found.errors else 200,
        values=found.values,
        errors=found.errors,
        names=names,
        rows=[_row(entry) for entry in entries],
        limit=limit,
        limits=sorted({*LIMITS, limit}),
        kinds=KINDS,
        export_link=found.link("/admin/audit/export"),
        report=report,
        verified_at=verified_at,
        unsigned=report.head_seq - report.last_checkpoint if report is not None else 0,
        checkpoint_every=every,
    )


@router.get("/audit/export")
async def export(request: Request, viewer: CurrentViewer, asked: Asked) -> Response:
    """Every matching record in chain order, as JSON Lines: the same lines as GET /api/audit/export."""
    actor = viewer.actor("audit:read")
    found = _search(await user_names(request, viewer), asked)
    if found.errors:
        raise BadRequest("; ".join(found.errors.values()))
    name = f"bastion-audit-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.jsonl"
    headers = {"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"}
    return StreamingResponse(
        export_lines(_db(request), actor.scope, found.query), media_type="application/x-ndjson", headers=headers
    )


_NAMED = ("stage", "phase", "action", "reason")


def _decision(decision: dict[str, Any]) -> dict[str, str]:
    """One stage's decision on the call: its named parts, and the rest (detector names, counts, paths)."""
    rest = {key: value for key, value in decision.items() if key not in _NAMED}
    named = {key: str(decision.get(key) or "") for key in _NAMED}
    return named | {"more": json.dumps(rest, ensure_ascii=False, default=str) if rest else ""}


def _step(entry: AuditEntry) -> dict[str, Any]:
    """One record on a request's timeline: what it was, and its detail (pipeline decisions apart)."""
    row = _row(entry)
    detail = dict(entry.detail or {})
    pipeline = detail.pop("pipeline", None)
    started = _at(entry.at_us - entry.latency_us)
    if entry.kind == "mcp.request":
        title = "Inbound request"
    elif entry.kind == "upstream.call":
        title = f"Downstream call to {entry.origin}" if entry.origin else "Downstream call"
    else:
        title = entry.kind
    return row | {
        "title": title,
        "started": started.strftime("%H:%M:%S.") + f"{started.microsecond // 1000:03d}",
        "pipeline": [_decision(d) for d in pipeline if isinstance(d, dict)] if isinstance(pipeline, list) else [],
        "detail": json.dumps(detail, indent=2, ensure_ascii=False, default=str) if detail else "",
    }


@router.get("/audit/trace/{correlation_id}")
async def trace(request: Request, viewer: CurrentViewer, correlation_id: str) -> Response:
    """Every record of one request, in the order they started: the inbound request, then each
    downstream call it made (a call's record is written when it ends, so its start orders them)."""
    actor = viewer.actor("audit:read")
    if len(correlation_id) > 128:
        raise NotFound("no audit record has this correlation id")
    entries = await search(_db(request), actor.scope, AuditQuery(correlation_id=correlation_id), limit=_TRACE_LIMIT)
    if not entries:
        raise NotFound(
            f"no audit record has the correlation id {correlation_id!r} (yet: records reach the store "
            "within a second of the request)"
        )
    entries.sort(key=lambda e: (e.at_us - e.latency_us, e.seq))
    return page(
        request,
        "trace.html",
        viewer=viewer,
        correlation_id=correlation_id,
        steps=[_step(entry) for entry in entries],
        names=await user_names(request, viewer),
        truncated=len(entries) >= _TRACE_LIMIT,
    )
