"""The OriginClient protocol: what the data plane needs from an origin connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bastion.catalog.param_headers import ParamHeaders
from bastion.catalog.snapshot import OriginSpec
from bastion.mcp.upstream.commands import StdioPolicy
from bastion.net.egress import EgressPolicy
from bastion.oauth.downstream_grants import DownstreamGrants

__all__ = ["NotificationSink", "OriginClient", "OriginGuard", "ProgressSink"]

ProgressSink = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Receives `(method, params)` of each notification the origin sends about one forwarded
request: its `notifications/progress`, and on HTTP origins any notification that arrives
on that request's reply stream (logging messages, for instance)."""

NotificationSink = Callable[[str, str, dict[str, Any]], Awaitable[None]]
"""Receives `(origin_id, method, params)` for origin-level notifications (list_changed, logging)."""


@dataclass(frozen=True)
class OriginGuard:
    """Where origin connections may go, and the tokens Bastion mints for them; every client of the pool
    obeys it."""

    egress: EgressPolicy  # HTTP origins: the resolved address is checked at connect time
    stdio: StdioPolicy  # stdio origins: the command allowlist and the child's resource limits
    tokens: TokenMinter | None = None  # mints the JWTs of origins with auth_mode `jwt`
    grants: DownstreamGrants | None = None  # people's tokens at origins with auth_mode `oauth`


@dataclass(frozen=True, slots=True)
class OnBehalf:
    """Whom a forwarded call is made for: what a per-user origin credential is minted from."""

    user_id: str
    tenant_id: str
    scopes: tuple[str, ...]
    # Per-user OAuth origins: the person's own access token there, resolved before the call.
    bearer: str | None = field(default=None, repr=False)


class TokenMinter(Protocol):
    def mint(
        self,
        *,
        audience: str,
        subject: str,
        tenant_id: str,
        scopes: tuple[str, ...],
        lifetime: int,
        username: str | None = None,
        typ: str = ...,
    ) -> str: ...


class OriginClient(Protocol):
    spec: OriginSpec
    protocol_version: str | None
    param_headers: Mapping[str, ParamHeaders]  # the pool's, from the snapshot (see `param_headers`)

    async def connect(self) -> dict[str, Any]:
        """Connect and handshake if not yet done; return the origin's capabilities."""
        ...

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        progress: ProgressSink | None = None,
        capabilities: dict[str, Any] | None = None,
        on_behalf: OnBehalf | None = None,
        repeatable: bool = True,
    ) -> dict[str, Any]:
        """Send one request and return its `result`; raise an `UpstreamError` on any failure.

        `capabilities`: client capabilities to declare for this request (2026-07-28 origins
        only; a handshake-era origin knows Bastion's, declared once at initialize).
        `repeatable`: False for a call that may change something and is not idempotent: it is
        never sent twice, even when a kept connection turns out closed before any answer.
        Cancelling the calling task cancels the request at the origin too.
        """
        ...

    async def aclose(self) -> None: ...
