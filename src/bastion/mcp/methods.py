"""JSON-RPC methods of a virtual server, answered from the snapshot or forwarded to an origin.

Lists are composed from the snapshot (no origin round trip); calls are routed
by the client-visible name to the origin that really offers the item, under
the origin's own name.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import mcp_types as mt
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from bastion import __version__
from bastion.audit.sink import AuditSink, Durability
from bastion.catalog import param_headers
from bastion.catalog.snapshot import OriginSpec, Route, ServerView, Snapshot
from bastion.errors import (
    BastionError,
    Forbidden,
    HeaderMismatch,
    InvalidParams,
    MethodNotFound,
    Quarantined,
    UpstreamProtocolError,
    UpstreamRefused,
    UpstreamRejected,
    UpstreamUnauthorized,
)
from bastion.identity.principal import Principal
from bastion.mcp.auditing import FORWARDED, StoreFirst, call_record, stored_first
from bastion.mcp.upstream import OriginPool, ProgressSink
from bastion.mcp.upstream.base import OnBehalf, OriginClient
from bastion.oauth.downstream_exchange import TokenExchanger
from bastion.oauth.downstream_grants import DownstreamGrants, client_key
from bastion.observability.metrics import Metrics
from bastion.observability.tracing import Tracing
from bastion.pipeline.base import Asker, CallContext, Item
from bastion.pipeline.chain import Pipeline

__all__ = ["SERVER_CAPABILITIES", "Call", "Methods"]

_M = TypeVar("_M", bound=BaseModel)

PAGE_SIZE = 100

SERVER_CAPABILITIES: dict[str, Any] = {
    "tools": {"listChanged": True},
    "resources": {"listChanged": True},
    "prompts": {"listChanged": True},
    "completions": {},
    "logging": {},
}


MAX_INPUT_ROUNDS = 10  # an origin that never stops asking must not hold a call forever


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


Handler = Callable[[Call, dict[str, Any]], Awaitable[dict[str, Any]]]
Screen = Callable[[dict[str, Any]], dict[str, Any]]  # the pipeline's check of what goes to the origin


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
        self._pool = pool
        self._pipeline = pipeline  # None: the bare proxy (no stages), which only `make bench` measures
        self._store_first = store_first
        self._audit_sink = audit
        self._metrics = metrics or Metrics()
        self._tracing = tracing or Tracing()
        self._grants = grants  # people's tokens at per-user OAuth origins
        self._exchanger = exchanger  # people's tokens at origins that take a token exchange
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
                durable = self._audit(call, "mcp.request", method, params, started, exc)
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
            durable = self._audit(call, "mcp.request", method, params, started, None)
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

    def _audit(
        self,
        call: Call,
        kind: str,
        method: str,
        params: dict[str, Any],
        started: float,
        failure: BaseException | None,
        origin: str = "",
    ) -> Durability | None:
        if self._audit_sink is None:
            return None
        detail = {"pipeline": call.trail} if kind == "mcp.request" and call.trail else None
        record = call_record(call.principal, call.server.slug, kind, method, params, started, failure, origin, detail)
        # Only a forwarded call's own record is waited for (in `dispatch`); the rest (its upstream
        # call, which is queued before it, lists, refusals) go with that batch, or with the next one.
        return self._audit_sink.record(call.server.placement.tenant_id, record)

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
        forwarded = {"name": route.upstream_name, "arguments": arguments, **_round_trip(params)}
        return await self._forward(call, route, "tools/call", forwarded, mt.CallToolResult)

    async def _resources_read(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        request = _validate(mt.ReadResourceRequestParams, params, "resources/read")
        uri = str(request.uri)
        route = call.server.resources.get(uri) or call.server.template_for(uri)
        if route is None:
            _unknown(call.server, "resource", uri)
        forwarded = {"uri": uri, **_round_trip(params)}
        return await self._forward(call, route, "resources/read", forwarded, mt.ReadResourceResult)

    async def _prompts_get(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        request = _validate(mt.GetPromptRequestParams, params, "prompts/get")
        route = call.server.prompts.get(request.name)
        if route is None:
            _unknown(call.server, "prompt", request.name)
        forwarded: dict[str, Any] = {"name": route.upstream_name, **_round_trip(params)}
        if request.arguments is not None:
            forwarded["arguments"] = request.arguments
        return await self._forward(call, route, "prompts/get", forwarded, mt.GetPromptResult)

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
        return await self._forward(call, route, "completion/complete", forwarded, mt.CompleteResult)

    async def _forward(
        self, call: Call, route: Route, method: str, params: dict[str, Any], model: type[BaseModel]
    ) -> dict[str, Any]:
        """The pipeline's request stages, the origin call (its answer validated: a result, or a request
        for user input), then the response stages (`bastion.pipeline.chain` has the order)."""
        spec = call.snapshot.origins[route.origin_id]
        if self._pipeline is None:
            return await self._upstream(call, route, spec, method, params, model)
        ctx = self._context(call, route, spec, method, params)
        if call.progress is not None:  # the origin's notifications during the call pass the pipeline too
            call = dataclasses.replace(call, progress=self._pipeline.notifications(ctx, call.progress))
        started = time.perf_counter()
        reply = await self._pipeline.request(ctx)
        self._metrics.stage("pipeline_request", time.perf_counter() - started)
        if reply is not None:  # answered by a stage (it asks the client for input first)
            return reply
        pipeline = self._pipeline
        try:
            result = await self._upstream(
                call, route, spec, method, ctx.params, model, answers=lambda given: pipeline.answers(ctx, given)
            )
        except UpstreamRejected as rejected:  # the origin's own error: screened like its results
            raise self._pipeline.rejected(ctx, rejected) from None
        call.trail.append({"stage": "forward", "phase": "forward", "action": "allow", "origin": spec.name})
        started = time.perf_counter()
        result = await self._pipeline.response(ctx, result)
        self._metrics.stage("pipeline_response", time.perf_counter() - started)
        return result

    def _context(self, call: Call, route: Route, spec: OriginSpec, method: str, params: dict[str, Any]) -> CallContext:
        assert self._pipeline is not None
        tenant_id = call.server.placement.tenant_id
        settings = self._pipeline.settings(
            call.snapshot.policies, tenant_id, call.server.slug, spec.name, route.upstream_name
        )
        item = Item(route.kind, route.exposed_name, route.upstream_name, spec.name, route.definition)
        return CallContext(
            method=method,
            item=item,
            params=params,
            principal_id=call.principal.user_id,
            principal_name=call.principal.username,
            tenant_id=tenant_id,
            server=call.server.slug,
            settings=settings,
            modern=call.modern,
            ask=call.ask,
            session_id=call.session_id,
            client_capabilities=call.client_capabilities,
            trail=call.trail,
        )

    async def _upstream(
        self,
        call: Call,
        route: Route,
        spec: OriginSpec,
        method: str,
        params: dict[str, Any],
        model: type[BaseModel],
        answers: Screen | None = None,
    ) -> dict[str, Any]:
        client = self._pool.client(spec)
        on_behalf = await self._on_behalf(call, spec)
        started = time.perf_counter()
        sink = self._audit_sink
        if sink is not None and method == "tools/call" and stored_first(self._store_first, route.definition):
            # A side-effecting tool is called only once the store holds a record that it is being
            # called: if this replica's disk is lost later, the trail still shows the call.
            intent = call_record(
                call.principal, call.server.slug, "upstream.intent", method, params, started, None, spec.name
            )
            await sink.commit(call.server.placement.tenant_id, dataclasses.replace(intent, status="pending"))
        with self._tracing.span(
            f"upstream {method}", {"mcp.method.name": method, "bastion.origin": spec.name}, kind="client"
        ) as span:
            try:
                result = await self._rounds(call, route, client, method, params, model, on_behalf, spec, answers)
            except BaseException as exc:
                self._audit(call, "upstream.call", method, params, started, exc, origin=spec.name)
                elapsed = time.perf_counter() - started
                self._metrics.upstream(spec.name, exc, elapsed)
                self._metrics.stage("forward", elapsed)
                self._tracing.failed(span, exc)
                raise
        self._audit(call, "upstream.call", method, params, started, None, origin=spec.name)
        elapsed = time.perf_counter() - started
        self._metrics.upstream(spec.name, None, elapsed)
        self._metrics.stage("forward", elapsed)
        return result

    async def _rounds(
        self,
        call: Call,
        route: Route,
        client: OriginClient,
        method: str,
        params: dict[str, Any],
        model: type[BaseModel],
        on_behalf: OnBehalf | None,
        spec: OriginSpec,
        answers: Screen | None = None,
    ) -> dict[str, Any]:
        repeatable = _repeatable(method, route.definition)
        for _ in range(MAX_INPUT_ROUNDS):
            send = functools.partial(
                client.request,
                method,
                params,
                progress=call.progress,
                capabilities=_relayable(call),
                repeatable=repeatable,
            )
            try:
                result = await send(on_behalf=on_behalf)
            except UpstreamUnauthorized:
                if on_behalf is None or on_behalf.bearer is None:
                    raise
                # The person's token was refused (revoked, or expired early): refresh it, once. A
                # refresh the server refuses marks the grant lost and raises ConnectionRequired.
                on_behalf = await self._on_behalf(call, spec, refused=on_behalf.bearer)
                result = await send(on_behalf=on_behalf)
            if result.get("resultType") != "input_required":
                _check_result(model, result, route)
                return result
            _check_result(mt.InputRequiredResult, result, route)
            _only_elicitation(result, route)
            if call.modern:
                # 2026-07-28 multi-round-trip: the client answers and retries; Bastion passes both
                # legs through (the origin keeps and checks its own requestState).
                return result
            if call.ask is None:
                raise UpstreamRejected(
                    mt.MISSING_REQUIRED_CLIENT_CAPABILITY,
                    f"the origin behind {route.exposed_name!r} asks for user input; this client did not declare "
                    "elicitation (or does not read event streams), so Bastion cannot ask it",
                )
            # Handshake-era client: ask it each question as a request, then retry at the origin.
            given = await _ask_all(call.ask, result.get("inputRequests") or {})
            params = {**params, "inputResponses": answers(given) if answers is not None else given}
            if "requestState" in result:
                params["requestState"] = result["requestState"]
        raise UpstreamProtocolError(
            f"the origin behind {route.exposed_name!r} asked for input {MAX_INPUT_ROUNDS} times"
        )

    async def _on_behalf(self, call: Call, spec: OriginSpec, refused: str | None = None) -> OnBehalf | None:
        """Whom the call is made for, when the origin takes a per-user credential: a JWT Bastion mints,
        or the person's own token from their grant at the origin's authorization server."""
        credential = spec.credential
        if credential is None or credential.mode not in ("jwt", "oauth", "exchange"):
            return None
        principal = call.principal
        member = call.snapshot.members.get(principal.user_id)
        tenant_id = member.tenant_id if member is not None else spec.tenant_id
        who = OnBehalf(principal.user_id, tenant_id, tuple(sorted(principal.scopes)))
        if credential.oauth is None:
            return who  # a minted JWT (or a credential that did not open: the client refuses to call)
        if credential.mode == "exchange":
            if self._exchanger is None:
                raise UpstreamRefused(f"origin {spec.name!r} takes token exchange, which is not configured here")
            if refused is not None:
                self._exchanger.forget(spec.id, principal.user_id)
            bearer = await self._exchanger.bearer(
                spec.id,
                credential.oauth,
                tenant_id=tenant_id,
                user_id=principal.user_id,
                username=principal.username,
                scopes=who.scopes,
            )
            return dataclasses.replace(who, bearer=bearer)
        if self._grants is None:
            raise UpstreamRefused(f"origin {spec.name!r} takes per-user connections, which are not configured here")
        bearer = await self._grants.bearer(
            spec.id,
            spec.name,
            credential.oauth,
            tenant_id=tenant_id,
            user_id=principal.user_id,
            client=client_key(principal.client_id, principal.token_id),
            epoch=call.snapshot.epoch,
            refused=refused,
        )
        return dataclasses.replace(who, bearer=bearer)


async def _ask_all(ask: Asker, requests: dict[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for key, request in requests.items():
        reply = await ask(request["method"], request.get("params") or {})
        if "result" not in reply:
            error = reply.get("error") or {}
            raise UpstreamRejected(int(error.get("code", mt.INTERNAL_ERROR)), str(error.get("message", "declined")))
        answers[key] = reply["result"]
    return answers


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


def _round_trip(params: dict[str, Any]) -> dict[str, Any]:
    """The 2026-07-28 multi-round-trip fields of a retried request, passed on unchanged."""
    return {key: params[key] for key in ("inputResponses", "requestState") if key in params}


def _repeatable(method: str, definition: Mapping[str, Any]) -> bool:
    """Whether the origin may be sent this request twice (when a kept connection fails before any
    answer): all but a tool call that may change something, unless the tool says it is idempotent."""
    if method != "tools/call":
        return True
    annotations = definition.get("annotations") or {}
    return annotations.get("readOnlyHint") is True or annotations.get("idempotentHint") is True


def _relayable(call: Call) -> dict[str, Any] | None:
    """What the origin may know of the client's capabilities: elicitation, when Bastion can relay it."""
    if call.modern and call.client_capabilities and "elicitation" in call.client_capabilities:
        return {"elicitation": call.client_capabilities["elicitation"]}
    if call.ask is not None:
        return {"elicitation": {}}
    return None


def _only_elicitation(result: dict[str, Any], route: Route) -> None:
    """An origin may ask the client only what Bastion offered it for the client: elicitation (see
    `_relayable`). Sampling would put the origin's text before the client's model, roots would
    show it the client's files; neither is relayed, in either era."""
    methods = {str(question.get("method")) for question in (result.get("inputRequests") or {}).values()}
    asked = sorted(methods - {"elicitation/create"})
    if asked:
        raise UpstreamProtocolError(
            f"the origin behind {route.exposed_name!r} asked the client for {', '.join(asked)}; "
            "Bastion relays only elicitation/create"
        )


def _check_result(model: type[BaseModel], result: dict[str, Any], route: Route) -> None:
    try:
        model.model_validate(result)
    except ValidationError:
        raise UpstreamProtocolError(f"the origin behind {route.exposed_name!r} sent a malformed result") from None


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
