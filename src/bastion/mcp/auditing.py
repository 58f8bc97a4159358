"""The audit record of one MCP request or one upstream call, as the data plane describes it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from bastion.audit.chain import AuditRecord, digest_arguments
from bastion.audit.sink import correlation_id, now_us
from bastion.errors import BastionError, Forbidden, TooManyRequests, Unauthenticated, UpstreamRejected
from bastion.identity.principal import Principal
from bastion.ids import unique_id
from bastion.oauth.downstream_grants import client_key

__all__ = ["FORWARDED", "StoreFirst", "call_record", "refusal_record", "stored_first"]

# Which tool calls reach their origin only once a record of the call is in the store (not only
# in this replica's journal): `unless-read-only` (default) every tool not annotated readOnlyHint,
# `destructive` those whose destructiveHint is not false (the spec's default), `never` none.
StoreFirst = Literal["unless-read-only", "destructive", "never"]

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
    detail: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """Who, what, on which item, with what outcome; the arguments only as a digest, never a token.
    `detail`: small, secret-free extras (the pipeline's decisions)."""
    target = params.get("name") if method in ("tools/call", "prompts/get") else params.get("uri")
    arguments = params.get("arguments")
    if failure is None:
        decision, status, reason = "allow", "ok", ""
    elif isinstance(failure, UpstreamRejected) and failure.from_origin:
        # The origin's own words are its content, like its results: they may echo an argument or a
        # secret, and the trail keeps neither (the client gets them after DLP). Its code says enough.
        decision, status, reason = "error", str(failure.code), f"the origin answered with error {failure.code}"
    elif isinstance(failure, BastionError):
        denied = isinstance(failure, Forbidden | Unauthenticated | TooManyRequests)  # a rule said no
        decision, status, reason = ("deny" if denied else "error"), str(failure.jsonrpc_code), failure.message
    else:  # cancelled, or a defect: named by its type only
        decision, status, reason = "error", type(failure).__name__, ""
    return AuditRecord(
        id=unique_id(),
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
        detail=detail or {},
    )


def refusal_record(
    principal: Principal | None,
    server: str,
    method: str,
    reason: str,
    code: int,
    *,
    denied: bool,
    started: float | None = None,
) -> AuditRecord:
    """A request refused before any method ran: bad token, unknown server, malformed body, headers
    that contradict the body. `principal` is None when nobody could be identified."""
    return AuditRecord(
        id=unique_id(),
        at_us=now_us(),
        correlation_id=correlation_id(),
        kind="mcp.request",
        principal=principal.user_id if principal is not None else "",
        client=client_key(principal.client_id, principal.token_id) if principal is not None else "",
        server=server[:64],
        method=method[:128],
        decision="deny" if denied else "error",
        reason=reason[:500],
        status=str(code),
        latency_us=0 if started is None else int((time.perf_counter() - started) * 1_000_000),
    )


def exchange_record(principal: Principal, server: str, method: str, started: float) -> AuditRecord:
    """A request answered by the endpoint itself, no method table involved: a session opened or
    ended, an event stream opened, a client's notification or its reply to Bastion's request."""
    return AuditRecord(
        id=unique_id(),
        at_us=now_us(),
        correlation_id=correlation_id(),
        kind="mcp.request",
        principal=principal.user_id,
        client=client_key(principal.client_id, principal.token_id),
        server=server[:64],
        method=method[:128],
        decision="allow",
        status="ok",
        latency_us=int((time.perf_counter() - started) * 1_000_000),
    )


def stored_first(policy: StoreFirst, definition: Mapping[str, Any]) -> bool:
    """Whether a call of this tool waits for its record to be in the store before it is forwarded."""
    if policy == "never":
        return False
    annotations = definition.get("annotations") or {}
    if annotations.get("readOnlyHint") is True:
        return False
    return policy == "unless-read-only" or annotations.get("destructiveHint", True) is not False
