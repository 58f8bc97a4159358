"""JSON-RPC methods of a virtual server, answered from the snapshot or forwarded to an origin.

Lists are composed from the snapshot (no origin round trip); calls are routed
by the client-visible name to the origin that really offers the item, under
the origin's own name (`bastion.mcp.forwarding` makes the call).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import mcp_types as mt
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from bastion import __version__
from bastion.audit.sink import AuditSink
from bastion.catalog import param_headers
from bastion.catalog.snapshot import ServerView
from bastion.errors import (
    BastionError,
    Forbidden,
    HeaderMismatch,
    InvalidParams,
    MethodNotFound,
    Quarantined,
)
from bastion.mcp.auditing import FORWARDED, StoreFirst
from bastion.mcp.call import Call, record_call
from bastion.mcp.forwarding import Forwarder
from bastion.mcp.upstream import OriginPool
from bastion.oauth.downstream_exchange import TokenExchanger
from bastion.oauth.downstream_grants import DownstreamGrants
from bastion.observability.metrics import Metrics
from bastion.observability.tracing import Tracing
from bastion.pipeline.chain import Pipeline

__all__ = ["SERVER_CAPABILITIES", "Call", "Methods", "round_trip"]

_M = TypeVar("_M", bound=BaseModel)

PAGE_SIZE = 100

SERVER_CAPABILITIES: dict[str, Any] = {
    "tools": {"listChanged": True},
    "resources": {"listChanged": True},
    "prompts": {"listChanged": True},
    "completions": {},
    "logging": {},
}


Handler = Callable[[Call, dict[str, Any]], Awaitable[dict[str, Any]]]


class Methods:
    def __init__(
        self,
        pool: OriginPool,
        grants: DownstreamGrants | None = None,
        exchanger: TokenExchanger | None = None,
        audit: AuditSink | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        store_first: StoreFirst = "unless-read-only",
        pipeline: Pipeline | None = None,
    ) -> None:
        self._audit_sink = audit
        self._metrics = metrics or Metrics()
        self._tracing = tracing or Tracing()
        self._forwarder = Forwarder(
            pool,
            grants=grants,
            exchanger=exchanger,
            audit=audit,
            metrics=self._metrics,
            tracing=self._tracing,
            store_first=store_first,
            pipeline=pipeline,
        )
        self._table: dict[str, Handler] = {
            "ping": self._ping,
            "server/discover": self._discover,
            "logging/setLevel": self._ping,
            "tools/list": self._tools_list,
            "tools/call": self._tools_call,
            "resources/list": self._resources_list,
            "resources/templates/list": self._templates_list,
            "resources/read": self._resources_read,
            "prompts/list": self._prompts_list,
            "prompts/get": self._prompts_get,
            "completion/complete": self._complete,
        }

    async def dispatch(self, call: Call, method: str, params: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        name = params.get("name") if method in ("tools/call", "prompts/get") else None
        with self._tracing.span(
            f"mcp {method}", {"mcp.method.name": method, "bastion.server": call.server.slug, "bastion.item": name}
        ) as span:
            try:
                handler = self._table.get(method)
                if handler is None:
                    raise MethodNotFound(f"method {method!r} is not offered by this server")
                result = await handler(call, params)
            except BaseException as exc:
                durable = record_call(self._audit_sink, call, "mcp.request", method, params, started, exc)
                # A method nobody offers is counted as "other": a client's made-up names must not
                # grow the metrics without bound.
                label = method if method in self._table else "other"
                self._metrics.mcp(label, exc, time.perf_counter() - started)
                self._tracing.failed(span, exc)
                if durable is not None and method in FORWARDED and isinstance(exc, BastionError):
                    # Refused after the origin may have acted (a result withheld, an origin error):
                    # the refusal is answered once its record is durable too. Never on a cancel.
                    await durable.wait()
                raise
            durable = record_call(self._audit_sink, call, "mcp.request", method, params, started, None)
            if durable is not None and method in FORWARDED:
                # Answered only once its record is durable: a call the client saw succeed is in the trail.
                waiting = time.perf_counter()
                with self._tracing.span("audit record durable"):
                    await durable.wait()
                self._metrics.stage("audit", time.perf_counter() - waiting)
            self._metrics.mcp(method, None, time.perf_counter() - started)
        if call.modern and "resultType" not in result:
            result["resultType"] = "complete"  # required on the 2026-07-28 wire
        return result

    @staticmethod
    def server_info(server: ServerView) -> dict[str, Any]:
        return {"name": f"bastion/{server.slug}", "title": server.title or server.slug, "version": __version__}

    # --- lifecycle -------------------------------------------------------------------
    async def _ping(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def _discover(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "supportedVersions": [*MODERN_PROTOCOL_VERSIONS, *reversed(HANDSHAKE_PROTOCOL_VERSIONS)],
            "capabilities": SERVER_CAPABILITIES,
            "serverInfo": self.server_info(call.server),
            "ttlMs": 0,
            "cacheScope": "private",
            "_meta": {mt.SERVER_INFO_META_KEY: self.server_info(call.server)},
        }
        if call.server.description:
            result["instructions"] = call.server.description
        return result

    # --- lists: composed from the snapshot ---------------------------------------------
    async def _tools_list(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        return _page(call, "tools", [r.definition for r in call.server.tools.values()], params)

    async def _resources_list(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        return _page(call, "resources", [r.definition for r in call.server.resources.values()], params)

    async def _templates_list(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        return _page(call, "resourceTemplates", [r.definition for r in call.server.templates], params)

    async def _prompts_list(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        return _page(call, "prompts", [r.definition for r in call.server.prompts.values()], params)

    # --- forwarded calls -----------------------------------------------------------------
    async def _tools_call(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        request = _validate(mt.CallToolRequestParams, params, "tools/call")
        route = call.server.tools.get(request.name)
        if route is None:
            _unknown(call.server, "tool", request.name)
        arguments = request.arguments or {}
        if call.modern and (route.param_headers or call.param_headers):
            mismatch = param_headers.mismatch(route.definition, arguments, call.param_headers or {})
            if mismatch is not None:  # a proxy in front of Bastion may have routed on the header
                raise HeaderMismatch(mismatch)
        forwarded = {"name": route.upstream_name, "arguments": arguments, **round_trip(call, params)}
        return await self._forwarder.forward(call, route, "tools/call", forwarded, mt.CallToolResult)

    async def _resources_read(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        request = _validate(mt.ReadResourceRequestParams, params, "resources/read")
        uri = str(request.uri)
        route = call.server.resource_for(uri) or call.server.template_for(uri)
        if route is None:
            _unknown(call.server, "resource", uri)
        forwarded = {"uri": uri, **round_trip(call, params)}
        return await self._forwarder.forward(call, route, "resources/read", forwarded, mt.ReadResourceResult)

    async def _prompts_get(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        request = _validate(mt.GetPromptRequestParams, params, "prompts/get")
        route = call.server.prompts.get(request.name)
        if route is None:
            _unknown(call.server, "prompt", request.name)
        forwarded: dict[str, Any] = {"name": route.upstream_name, **round_trip(call, params)}
        if request.arguments is not None:
            forwarded["arguments"] = request.arguments
        return await self._forwarder.forward(call, route, "prompts/get", forwarded, mt.GetPromptResult)

    async def _complete(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        request = _validate(mt.CompleteRequestParams, params, "completion/complete")
        ref = request.ref
        if isinstance(ref, mt.PromptReference):
            route = call.server.prompts.get(ref.name)
            upstream_ref: dict[str, Any] = {"type": "ref/prompt", "name": route.upstream_name if route else ""}
        else:
            route = call.server.resources.get(ref.uri) or call.server.template_named(ref.uri)
            upstream_ref = {"type": "ref/resource", "uri": route.upstream_name if route else ""}
        if route is None:
            raise InvalidParams("completion reference names no item of this server")
        forwarded = request.model_dump(by_alias=True, exclude_none=True, exclude={"meta"})
        forwarded["ref"] = upstream_ref
        return await self._forwarder.forward(call, route, "completion/complete", forwarded, mt.CompleteResult)


def _unknown(server: ServerView, kind: str, name: str) -> NoReturn:
    """An item this view lacks: forbidden when the server offers it but not to this caller."""
    if (kind, name) in server.denied:
        raise Forbidden(f"your roles do not allow this {kind}: {name!r} (ask an administrator for access)")
    if (kind, name) in server.quarantined:
        raise Quarantined(
            f"{kind} {name!r} is quarantined: its origin offers a definition no administrator approved (changed, "
            "or new since the connector was reviewed); an administrator must review it and approve it"
        )
    raise InvalidParams(f"unknown {kind}: {name!r}")


def _validate(model: type[_M], params: dict[str, Any], method: str) -> _M:
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        raise InvalidParams(f"invalid {method} params: {where}: {first['msg']}") from None


def round_trip(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """The 2026-07-28 multi-round-trip fields of a retried request, passed on unchanged; none from
    a handshake-era client, for which Bastion itself asks and retries (what such a client sent
    there would reach the origin as answers and state no question of Bastion's produced)."""
    if not call.modern:
        return {}
    return {key: params[key] for key in ("inputResponses", "requestState") if key in params}


def _page(call: Call, key: str, items: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    start = _decode_cursor(params.get("cursor"))
    result: dict[str, Any] = {key: items[start : start + PAGE_SIZE]}
    if start + PAGE_SIZE < len(items):
        result["nextCursor"] = base64.urlsafe_b64encode(str(start + PAGE_SIZE).encode()).decode()
    if call.modern:
        result.update(ttlMs=0, cacheScope="private")
    return result


def _decode_cursor(cursor: Any) -> int:
    if cursor is None:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(str(cursor).encode())))
    except ValueError:
        raise InvalidParams("invalid pagination cursor: pass back the nextCursor you were given") from None
