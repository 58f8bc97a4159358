"""What the data plane hands audit records to, and the request's correlation id.

The data plane never touches the store: it calls `AuditSink.record` (a queue append, no I/O)
and, for calls that reached an origin, waits on what it returns until the record is durable
(`bastion.store.repos.audit.AuditLog`), so a call a client saw succeed always has its record.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any, Protocol

from bastion.audit.chain import AuditRecord
from bastion.ids import unique_id

__all__ = ["REQUEST_ID", "AuditSink", "Durability", "correlation_id", "note", "noted", "now_us"]


class Durability(Protocol):
    async def wait(self) -> None: ...


class AuditSink(Protocol):
    def record(self, tenant_id: str, record: AuditRecord) -> Durability: ...

    async def commit(self, tenant_id: str, record: AuditRecord) -> None:
        """Append `record` to its chain in the store before returning; AuditUnavailable otherwise."""
        ...


# The request's correlation id, set by `bastion.http.middleware.RequestContext` (which binds it to
# the request's log lines too). Read here directly: structlog's `get_contextvars()` copies every
# context variable to find it, which was 1 % of the event loop's busy time at c=1.
REQUEST_ID: ContextVar[str | None] = ContextVar("bastion_request_id", default=None)


def correlation_id() -> str:
    """The id of the request being served, or a new one outside any request."""
    return REQUEST_ID.get() or unique_id()


def now_us() -> int:
    return time.time_ns() // 1000


def note(scope: MutableMapping[str, Any], **fields: str | None) -> None:
    """Tell the request's audit record what a route learned: `principal` (user id), `client`,
    `tenant`, `target`, `reason`. Kept in the ASGI scope's state, which every layer shares."""
    noted_fields = scope.setdefault("state", {}).setdefault("audit", {})
    noted_fields.update({name: value for name, value in fields.items() if value})


def noted(scope: MutableMapping[str, Any]) -> dict[str, str]:
    found = scope.get("state", {}).get("audit")
    return found if isinstance(found, dict) else {}
