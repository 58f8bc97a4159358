"""What the data plane hands audit records to, and the request's correlation id.

The data plane never touches the store: it calls `AuditSink.record` (a queue append, no I/O)
and, for calls that reached an origin, waits on what it returns until the record is durable
(`bastion.store.repos.audit.AuditLog`), so a call a client saw succeed always has its record.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any, Protocol

import structlog

from bastion.audit.chain import AuditRecord
from bastion.ids import unique_id

__all__ = ["AuditSink", "Durability", "correlation_id", "note", "noted", "now_us"]


class Durability(Protocol):
    async def wait(self) -> None: ...


class AuditSink(Protocol):
    def record(self, tenant_id: str, record: AuditRecord) -> Durability: ...

    async def commit(self, tenant_id: str, record: AuditRecord) -> None:
        """Append `record` to its chain in the store before returning; AuditUnavailable otherwise."""
        ...


def correlation_id() -> str:
    """The id `bastion.http.middleware.RequestContext` bound to this request (its logs carry it too)."""
    bound = structlog.contextvars.get_contextvars().get("request_id")
    return bound if isinstance(bound, str) else unique_id()


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
