"""Forwarding a call to the origin that offers the item: the pipeline's stages around it, the
person's credential there, the records of the origin call, and the rounds of user input an origin
may ask for (relayed in the client's own era)."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import mcp_types as mt
from pydantic import BaseModel, ValidationError

from bastion.audit.sink import AuditSink
from bastion.catalog.snapshot import OriginSpec, Route
from bastion.errors import UpstreamProtocolError, UpstreamRefused, UpstreamRejected, UpstreamUnauthorized
from bastion.mcp.auditing import StoreFirst, call_record, stored_first
from bastion.mcp.call import Call, record_call
from bastion.mcp.upstream import OriginPool
from bastion.mcp.upstream.base import OnBehalf, OriginClient
from bastion.oauth.downstream_exchange import TokenExchanger
from bastion.oauth.downstream_grants import DownstreamGrants, client_key
from bastion.observability.metrics import Metrics
from bastion.observability.tracing import Tracing
from bastion.pipeline.base import Asker, CallContext, Item
from bastion.pipeline.chain import Pipeline

__all__ = ["MAX_INPUT_ROUNDS", "Forwarder", "Screen"]

MAX_INPUT_ROUNDS = 10  # an origin that never stops asking must not hold a call forever

Screen = Callable[[dict[str, Any]], dict[str, Any]]  # the pipeline's check of one leg of an extra round


@dataclasses.dataclass(frozen=True, slots=True)
class Screens:
    """The pipeline's checks of a handshake-era call's extra rounds: the origin's questions before
    the client reads them, the client's answers before the origin does."""

    questions: Screen
    answers: Screen


class Forwarder:
    def __init__(
        self,
        pool: OriginPool,
        *,
        grants: DownstreamGrants | None,
        exchanger: TokenExchanger | None,
        audit: AuditSink | None,
        metrics: Metrics,
        tracing: Tracing,
        store_first: StoreFirst,
        pipeline: Pipeline | None,
    ) -> None:
        self._pool = pool
        self._pipeline = pipeline  # None: the bare proxy (no stages), which only `make bench` measures
        self._store_first = store_first
        self._audit_sink = audit
        self._metrics = metrics
        self._tracing = tracing
        self._grants = grants  # people's tokens at per-user OAuth origins
        self._exchanger = exchanger  # people's tokens at origins that take a token exchange

    async def forward(
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
                call,
                route,
                spec,
                method,
                ctx.params,
                model,
                Screens(lambda asked: pipeline.questions(ctx, asked), lambda given: pipeline.answers(ctx, given)),
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
        screens: Screens | None = None,
    ) -> dict[str, Any]:
        client = self._pool.client(spec, call.snapshot.epoch)
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
                result = await self._rounds(call, route, client, method, params, model, on_behalf, spec, screens)
            except BaseException as exc:
                record_call(self._audit_sink, call, "upstream.call", method, params, started, exc, origin=spec.name)
                elapsed = time.perf_counter() - started
                self._metrics.upstream(spec.name, exc, elapsed)
                self._metrics.stage("forward", elapsed)
                self._tracing.failed(span, exc)
                raise
        record_call(self._audit_sink, call, "upstream.call", method, params, started, None, origin=spec.name)
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
        screens: Screens | None = None,
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
                    from_origin=False,
                )
            # Handshake-era client: ask it each question as a request, then retry at the origin.
            asked = result.get("inputRequests") or {}
            given = await _ask_all(call.ask, screens.questions(asked) if screens is not None else asked)
            params = {**params, "inputResponses": screens.answers(given) if screens is not None else given}
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
            # The client's answer, not the origin's, and in whatever shape it chose: an error that is
            # no object, a code that is no integer, are a refusal all the same (not a broken stream).
            error = reply.get("error")
            error = error if isinstance(error, dict) else {}
            code, said = error.get("code"), error.get("message")
            code = code if isinstance(code, int) and not isinstance(code, bool) else mt.INTERNAL_ERROR
            raise UpstreamRejected(code, said[:500] if isinstance(said, str) else "declined", from_origin=False)
        answers[key] = reply["result"]
    return answers


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
