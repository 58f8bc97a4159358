"""The audit record of one MCP request or one upstream call, as the data plane describes it."""

from __future__ import annotations

import time
import uuid
from typing import Any

from bastion.audit.chain import AuditRecord, digest_arguments
from bastion.audit.sink import correlation_id, now_us
from bastion.errors import BastionError, Forbidden, Unauthenticated
from bastion.identity.principal import Principal
from bastion.oauth.downstream_grants import client_key

__all__ = ["FORWARDED", "call_record"]

# Methods that reach an origin: answered only once their audit record is durable.
FORWARDED = frozenset({"tools/call", "resources/read", "prompts/get", "completion/complete"})


def call_record(
    principal: Principal,
    server: str,
    kind: str,
    method: str,
    params: dict[str, Any],
    started: float,
    failure: BaseException | None,
    origin: str = "",
) -> AuditRecord:
    """Who, what, on which item, with what outcome; the arguments only as a digest, never a token."""
    target = params.get("name") if method in ("tools/call", "prompts/get") else params.get("uri")
    arguments = params.get("arguments")
    if failure is None:
        decision, status, reason = "allow", "ok", ""
    elif isinstance(failure, BastionError):
        denied = isinstance(failure, Forbidden | Unauthenticated)
        decision, status, reason = ("deny" if denied else "error"), str(failure.jsonrpc_code), failure.message
    else:  # cancelled, or a defect: named by its type only
        decision, status, reason = "error", type(failure).__name__, ""
    return AuditRecord(
        id=uuid.uuid4().hex,
        at_us=now_us(),
        correlation_id=correlation_id(),
        kind=kind,
        principal=principal.user_id,
        client=client_key(principal.client_id, principal.token_id),
        server=server,
        origin=origin,
        method=method,
        target=str(target)[:512] if isinstance(target, str) else "",
        args_digest=digest_arguments(arguments) if arguments is not None else "",
        decision=decision,
        reason=reason[:500],
        status=status[:32],
        latency_us=int((time.perf_counter() - started) * 1_000_000),
    )
