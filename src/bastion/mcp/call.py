"""One inbound MCP request as the methods and the forwarding see it, and the audit record of what
was done for it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bastion.audit.sink import AuditSink, Durability
from bastion.catalog.snapshot import ServerView, Snapshot
from bastion.identity.principal import Principal
from bastion.mcp.auditing import call_record
from bastion.mcp.upstream import ProgressSink
from bastion.pipeline.base import Asker

__all__ = ["Call", "record_call"]


@dataclass(frozen=True, slots=True)
class Call:
    """One inbound request, as the methods see it."""

    server: ServerView
    snapshot: Snapshot
    principal: Principal
    modern: bool
    progress: ProgressSink | None = None
    # 2026-07-28: the capabilities the client declared in this request's `_meta`.
    client_capabilities: dict[str, Any] | None = None
    # Handshake era: sends a request to the client and returns its JSON-RPC reply, when
    # the client can take one on this exchange (it declared elicitation and reads SSE).
    ask: Asker | None = None
    session_id: str | None = None
    # The pipeline's decisions on this request, in order: they go into its audit record.
    trail: list[dict[str, Any]] = field(default_factory=list)
    # 2026-07-28: the request's `Mcp-Param-*` headers, if any (see `bastion.catalog.param_headers`).
    param_headers: Mapping[str, str] | None = None


def record_call(
    sink: AuditSink | None,
    call: Call,
    kind: str,
    method: str,
    params: dict[str, Any],
    started: float,
    failure: BaseException | None,
    origin: str = "",
) -> Durability | None:
    """Queue the record of `call` (`mcp.request`: the request; `upstream.call`: its origin call)."""
    if sink is None:
        return None
    detail = {"pipeline": call.trail} if kind == "mcp.request" and call.trail else None
    record = call_record(call.principal, call.server.slug, kind, method, params, started, failure, origin, detail)
    # Only a forwarded call's own record is waited for (in `dispatch`); the rest (its upstream
    # call, which is queued before it, lists, refusals) go with that batch, or with the next one.
    return sink.record(call.server.placement.tenant_id, record)
