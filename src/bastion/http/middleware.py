"""Pure ASGI middleware.

`build_stack` wraps the whole app in `RequestContext`, the one layer every request passes: the
correlation id first (every later log line and every response, refusals included, carries it),
the security headers on every response (errors from inner layers too), one log line and the
metrics. `control_plane` wraps what is not the MCP endpoint:
1. RequestTrail: the audit record of each API and OAuth request, refusals by the body limit
   included (the MCP endpoint records its own).
2. BodyLimit: 413 over the limit (the MCP endpoint enforces its own limit while reading, so it
   can answer in JSON-RPC).

Why one outer layer, not one per concern: every layer is a coroutine frame and a `send` wrapper
on each message of every forwarded call. Skipping all four former layers for the MCP endpoint
(no correlation id, no headers: an upper bound, not a design) cut Bastion's CPU per call by 5-8 %
(`bench.compare`); this structure, which keeps what the first two did, by 1-4 % (B/A per round
0.96-0.99 at c=1, 0.97-1.00 at c=32).
"""

from __future__ import annotations

import re
import time
from typing import Any

import structlog
from opentelemetry.trace import Span, Status, StatusCode

from bastion.audit.sink import REQUEST_ID, AuditSink
from bastion.http.asgi import Message, Receive, Scope, Send, header, route_template, send_bytes
from bastion.http.refusal_budget import RefusalBudget
from bastion.http.request_audit import RequestTrail
from bastion.ids import unique_id
from bastion.observability.metrics import Metrics, plane_of
from bastion.observability.tracing import Tracing

__all__ = ["build_stack", "control_plane"]

log = structlog.get_logger("bastion.access")

_REQUEST_ID = re.compile(r"^(?!\.+$)[A-Za-z0-9._:-]{1,128}$")  # not dots alone: it names a path segment (trace links)
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
# A response may set these itself (see `RequestContext._secured`).
_OVERRIDABLE = {b"content-security-policy", b"cache-control"}
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
ASGIApp = Any


_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def _correlation_id(scope: Scope) -> str:
    """The request's correlation id: the W3C `traceparent` trace-id when the client sends one (so
    Bastion's audit trail joins the client's trace), else a well-formed `X-Request-ID`, else new."""
    trace = _TRACEPARENT.match(header(scope, b"traceparent") or "")
    if trace is not None and trace.group(1) != "0" * 32:
        return trace.group(1)
    offered = header(scope, b"x-request-id")
    return offered if offered and _REQUEST_ID.match(offered) else unique_id()


class RequestContext:
    """Accept a `traceparent` or a well-formed `X-Request-ID`, or mint an id; echo it as
    `X-Request-ID`; put the security headers on every response; bind the id to every log line of
    the request; log one line per request; count it (metrics) and, with tracing on, wrap it in the
    server span its spans descend from."""

    def __init__(
        self, app: ASGIApp, *, tls: bool, metrics: Metrics | None = None, tracing: Tracing | None = None
    ) -> None:
        self.app = app
        self._headers = [*_SECURITY_HEADERS, _HSTS] if tls else list(_SECURITY_HEADERS)
        self._names = {name for name, _ in self._headers} | {b"server"}
        self._metrics = metrics
        self._tracing = tracing if tracing is not None and tracing.enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._tracing is None:
            await self._serve(scope, receive, send, _correlation_id(scope), None)
            return
        with self._tracing.inbound(scope, f"{scope['method']} {plane_of(scope['path'])}") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            # The trace id is the correlation id, unless the client named the request itself.
            offered = header(scope, b"x-request-id")
            named = offered if offered and _REQUEST_ID.match(offered) and not header(scope, b"traceparent") else None
            await self._serve(scope, receive, send, named or trace_id, span)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, request_id: str, span: Span | None) -> None:
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = self._secured(message.get("headers", ()), request_id)
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        bound = REQUEST_ID.set(request_id)  # what audit records read (bastion.audit.sink)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            log.info("request", method=scope["method"], path=scope["path"], status=status, ms=round(elapsed * 1000, 2))
            structlog.contextvars.unbind_contextvars("request_id")
            REQUEST_ID.reset(bound)
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            if self._metrics is not None:
                self._metrics.http(plane_of(scope["path"]), method, status, elapsed)
            if span is not None:
                plane = plane_of(scope["path"])
                span.update_name(f"{method} {'/servers/{slug}/mcp' if plane == 'mcp' else route_template(scope)}")
                span.set_attribute("bastion.plane", plane)
                span.set_attribute("http.request.method", method)
                span.set_attribute("url.path", scope["path"])
                span.set_attribute("http.response.status_code", status)
                span.set_attribute("bastion.correlation_id", request_id)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))

    def _secured(self, headers: Any, request_id: str) -> list[tuple[bytes, bytes]]:
        """The response's headers, the request id and the security headers (no `Server` banner)."""
        own_id = (b"x-request-id", request_id.encode())
        if not any(k.lower() in self._names for k, _ in headers):  # most responses: only appended
            return [*headers, own_id, *self._headers]
        kept = [(k, v) for k, v in headers if k.lower() not in self._names]
        own = [(k, v) for k, v in headers if k.lower() in _OVERRIDABLE]
        # A response may set these two itself: the sign-in pages their CSP (stylesheet and
        # form targets), public metadata its caching. Everything else gets the strict default.
        names = {k.lower() for k, _ in own}
        added = [(k, v) for k, v in self._headers if k not in names]
        return [*kept, own_id, *own, *added]


class BodyLimit:
    """413 for control-plane bodies over the limit, declared or streamed."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._limit:
            await _too_large(send, self._limit)
            return
        # Read the whole (bounded) body first: a framework that reads it later would turn an
        # exception raised mid-stream into its own 400.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self._limit:
                await _too_large(send, self._limit)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send, limit: int) -> None:
    body = b'{"error":{"code":"payload_too_large","message":"the request body exceeds %d bytes"}}' % limit
    await send_bytes(send, 413, body)


def build_stack(app: ASGIApp, *, tls: bool, metrics: Metrics | None = None, tracing: Tracing | None = None) -> ASGIApp:
    """The layer around everything (see the module's docstring)."""
    return RequestContext(app, tls=tls, metrics=metrics, tracing=tracing)


def control_plane(
    app: ASGIApp,
    *,
    body_limit: int,
    audit: AuditSink | None = None,
    fallback_tenant: str = "",
    refusals: RefusalBudget | None = None,
) -> ASGIApp:
    """The layers around what is not the MCP endpoint: its audit record, then its body limit."""
    app = BodyLimit(app, limit=body_limit)
    if audit is not None:
        app = RequestTrail(app, sink=audit, fallback_tenant=fallback_tenant, refusals=refusals)
    return app
