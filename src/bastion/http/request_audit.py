"""One audit record per control-plane and identity-plane request (the admin API, OAuth, sign-in).

The MCP endpoint records its own requests (with the method, the item and the arguments' digest);
this layer covers the rest of the routes that act or decide: `/api/...`, `/oauth/...`,
`/auth/...`, `/connect/...`. Public metadata (GET `/.well-known/...`, the JWKS), health and
metrics are not recorded. What a route learned (who the caller is, which client, why it refused)
reaches the record through `bastion.audit.sink.note`; the query string never does (codes, state).

A request that may change something is answered only once its record is durable, as a forwarded
tool call is: any method but GET/HEAD/OPTIONS, and the GETs of OAuth's redirects, which do change
things (`_changes`).

A refusal (4xx) of a request nobody was identified for is recorded within a budget per client
address (`RefusalBudget`, as the MCP endpoint's): past it, anyone who can reach the API could
grow the tenant's trail, and its journal on disk, at the rate they can send requests.
"""

from __future__ import annotations

import time
from typing import Any

from bastion.audit.chain import AuditRecord
from bastion.audit.sink import AuditSink, noted, now_us
from bastion.http.asgi import Message, Receive, Scope, Send, route_template
from bastion.http.refusal_budget import RefusalBudget
from bastion.ids import unique_id
from bastion.observability.metrics import plane_of

__all__ = ["RequestTrail"]

_KINDS = {"api": "api.request", "oauth": "oauth.request", "console": "console.request"}
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_PUBLIC = ("/.well-known/", "/oauth/jwks.json", "/admin/static/", "/admin/login")
ASGIApp = Any


def _changes(scope: Scope) -> bool:
    """The request may change something: any method but the safe ones, and the GETs that OAuth's
    redirects make change things (a callback stores a person's grant or signs them in; an
    authorization request issues a code)."""
    if scope["method"] not in _SAFE:
        return True
    path: str = scope["path"]
    return path.endswith("/callback") or path == "/oauth/authorize"


def _decision(status: int) -> str:
    if status < 400:
        return "allow"
    return "deny" if status in (401, 403, 429) else "error"


class RequestTrail:
    def __init__(
        self, app: ASGIApp, *, sink: AuditSink, fallback_tenant: str, refusals: RefusalBudget | None = None
    ) -> None:
        self.app = app
        self._sink = sink
        self._fallback_tenant = fallback_tenant  # a request nobody could be identified for
        self._refusals = refusals  # None: every refusal is recorded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = _KINDS.get(plane_of(scope["path"])) if scope["type"] == "http" else None
        if kind is None or (scope["method"] in _SAFE and scope["path"].startswith(_PUBLIC)):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = False

        async def send_recorded(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                status = message["status"]
                if await self._recorded(scope, status):
                    durable = self._record(scope, kind, started, status)
                    if _changes(scope):
                        await durable.wait()  # a change is acknowledged only once its record is on disk
            await send(message)

        try:
            await self.app(scope, receive, send_recorded)
        finally:
            if not answered:  # the client went away, or a defect: recorded without a status
                self._record(scope, kind, started, None)

    async def _recorded(self, scope: Scope, status: int) -> bool:
        """Whether this answer goes in the trail: always, but for refusals of requests nobody was
        identified for past their budget (nothing was done for anyone)."""
        if self._refusals is None or not 400 <= status < 500 or noted(scope).get("principal"):
            return True
        return await self._refusals.recorded(scope)

    def _record(self, scope: Scope, kind: str, started: float, status: int | None) -> Any:
        said = noted(scope)
        record = AuditRecord(
            id=unique_id(),
            at_us=now_us(),
            correlation_id=str(scope.get("state", {}).get("request_id", "")),
            kind=kind,
            principal=said.get("principal", ""),
            client=said.get("client", "")[:2048],
            method=f"{scope['method']} {route_template(scope)}"[:128],
            target=str(said.get("target") or scope["path"])[:512],
            decision="error" if status is None else _decision(status),
            reason=said.get("reason", "" if status is not None else "no response was sent")[:500],
            status="" if status is None else str(status),
            latency_us=int((time.perf_counter() - started) * 1_000_000),
        )
        return self._sink.record(said.get("tenant", self._fallback_tenant), record)
