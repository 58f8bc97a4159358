"""create_app(settings): builds Services, mounts the planes, wires the lifespan. Wiring only."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from bastion import __version__
from bastion.admin.api import router as admin_router
from bastion.admin.deps import MetricsRead
from bastion.catalog.snapshot import SLUG_PATTERN
from bastion.config import Settings
from bastion.console import router as console_router
from bastion.errors import Unavailable
from bastion.http.asgi import Receive, Scope, Send
from bastion.http.errors import install_error_handlers
from bastion.http.middleware import build_stack, control_plane
from bastion.identity.token_rules import RECORDER_SCOPE_KEY, TokenGate
from bastion.mcp.transport import McpEndpoint
from bastion.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bastion.services import Services
from bastion.store.models import DEFAULT_TENANT
from bastion.store.tenancy import SYSTEM
from bastion.web import router as identity_router

__all__ = ["create_app"]

_MCP_PREFIX, _MCP_SUFFIX = "/servers/", "/mcp"
_SLUG = re.compile(SLUG_PATTERN)
_API_PREFIX = "/api/"
# What a browser client must read of a response: the session it opened, the revision, where to get
# a token (RFC 9728's challenge), when to retry, and the correlation id.
CORS_EXPOSED = ("mcp-session-id", "mcp-protocol-version", "www-authenticate", "retry-after", "x-request-id")


class _Planes:
    """Routes `/servers/{slug}/mcp` straight to the data plane; everything else to the control plane
    (`control_plane`: its audit record and body limit around the FastAPI app)."""

    def __init__(self, endpoint: McpEndpoint, api: Any, gate: TokenGate | None = None) -> None:
        self._endpoint = endpoint
        self._api = api
        self._gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(_MCP_PREFIX) and path.endswith(_MCP_SUFFIX):
                slug = path[len(_MCP_PREFIX) : -len(_MCP_SUFFIX)]
                # Only a well-formed slug reaches the data plane, which names it in headers and links;
                # anything else (a decoded CR/LF or quote, say) is an unknown route: 404.
                if _SLUG.fullmatch(slug):
                    await self._endpoint(slug, scope, receive, send)
                    return
            if self._gate is not None and path.startswith(_API_PREFIX):
                # The admin API's authorization dependency attaches an API token to this recorder,
                # which logs the use with the response's status (admin/deps.py).
                recorder = self._gate.recorder(send, time.perf_counter())
                scope[RECORDER_SCOPE_KEY] = recorder
                try:
                    await self._api(scope, receive, recorder)
                finally:
                    recorder.close()
                return
        await self._api(scope, receive, send)


def create_app(settings: Settings, services: Services | None = None) -> Any:
    services = services or Services(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with services.running():
            yield

    api = FastAPI(
        title="Bastion admin API",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    api.state.control = services.control
    api.state.holder = services.holder
    api.state.services = services
    api.state.auth = services.auth
    api.state.users = services.users
    api.state.governance = services.governance
    api.state.policies = services.policies
    api.state.limits = services.limits
    api.state.client_ip = services.client_ip  # the one client-address resolver (trusted proxies)
    api.state.token_gate = services.token_gate
    install_error_handlers(api)
    api.include_router(admin_router)
    api.include_router(identity_router)
    if settings.admin_ui:
        api.include_router(console_router)

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        try:
            async with services.db.session(SYSTEM) as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:  # readiness reports any failure rather than raising it
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
        shared = services.bus.shared_epoch
        if shared is not None:
            try:
                await shared.read()  # protected requests are refused while Redis is unreachable
            except Unavailable as exc:
                return JSONResponse({"status": "unavailable", "reason": exc.message}, status_code=503)
        epoch = services.holder.current.epoch  # the store epoch this replica's snapshot reflects
        loaded = epoch >= 0
        return JSONResponse(
            {"status": "ready" if loaded else "starting", "epoch": epoch}, status_code=200 if loaded else 503
        )

    @api.get("/metrics", include_in_schema=False)
    async def metrics(_actor: MetricsRead) -> Response:
        return Response(services.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    control = control_plane(
        api,
        body_limit=settings.max_body_bytes,
        audit=services.audit,
        fallback_tenant=DEFAULT_TENANT,
        refusals=services.request_refusals,
    )
    planes: Any = _Planes(services.endpoint, control, services.token_gate)
    if settings.cors_origins:
        # Both planes: a browser client on a listed origin speaks MCP (its preflight names the
        # `Mcp-*` headers, `Mcp-Param-*` among them, so any header a listed page asks for is
        # allowed), runs OAuth's discovery and token requests, and may use the admin API. Bearer
        # tokens, never cookies: no credentials mode. Inside the security headers' layer.
        planes = CORSMiddleware(
            planes,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["*"],
            expose_headers=list(CORS_EXPOSED),
            max_age=600,
        )
    app = build_stack(
        planes,
        tls=settings.tls,
        metrics=services.metrics,
        tracing=services.tracing,
    )
    app.services = services  # tests and the CLI reach the same objects
    return app
