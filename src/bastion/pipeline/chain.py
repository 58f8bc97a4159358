"""The order of the pipeline, and its invariants, in one place.

    authorize                 in the method table, before any stage: an item the caller may not
                              use is never seen by a stage (never configurable off)
    request:  rate_limit      first: before anything costly, and before a person is asked
              schema_guard    a malformed call is refused before rules read its arguments or a
                              person is bothered with it
              cedar           rules over who/what/arguments: they read arguments of the types the
                              schema promises (a string where a number belongs cannot dodge a rule)
              approval        the person approves the call as the client sent it (raw values)
              anonymize       stand-ins replace personal data...
              dlp             ...so DLP checks what will really leave; stand-ins are not findings
              <plugins>       custom stages see the final outgoing params
    forward                   the origin call (credential resolved there)
    response: <plugins>
              inspect         size, then injection markers and spotlighting, on the origin's own
                              text (before DLP redacts or anonymize restores anything)
              dlp             secrets and personal data in what the origin returned
              anonymize       the client's own values back in place of the stand-ins (after DLP,
                              which must not flag a person's own data as a leak)
              approval        an origin asking for more input keeps the approval in its state
    audit                     in the method table, after everything: every decision is in the record
                              (never configurable off)

A deny stops the phase at once: nothing after it runs, and the call is not forwarded (request)
or its result is withheld (response).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import ValidationError

from bastion.errors import BastionError, PolicyDenied, UpstreamRejected
from bastion.pipeline.anonymize import Anonymize
from bastion.pipeline.approval import Approval
from bastion.pipeline.base import CallContext, Decision, Phase, Stage
from bastion.pipeline.cedar import Cedar
from bastion.pipeline.config import STAGE_SETTINGS, merge, scope_chain
from bastion.pipeline.dlp import Dlp
from bastion.pipeline.dlp_detectors import Detector
from bastion.pipeline.inspect import Inspect, instructions_in
from bastion.pipeline.rate_limit import RateLimit
from bastion.pipeline.schema_guard import SchemaGuard

__all__ = ["BUILTIN", "ORDER", "Pipeline", "Policies"]

REQUEST_ORDER = ("rate_limit", "schema_guard", "cedar", "approval", "anonymize", "dlp")
RESPONSE_ORDER = ("inspect", "dlp", "anonymize", "approval")
ORDER = ("authorize", *REQUEST_ORDER, "forward", *RESPONSE_ORDER, "audit")
BUILTIN = frozenset({*REQUEST_ORDER, *RESPONSE_ORDER, "authorize", "forward", "audit"})
assert ORDER[0] == "authorize" and ORDER[-1] == "audit"  # the invariants no configuration changes
assert REQUEST_ORDER.index("schema_guard") < REQUEST_ORDER.index("cedar")
assert REQUEST_ORDER.index("anonymize") < REQUEST_ORDER.index("dlp")
assert RESPONSE_ORDER.index("dlp") < RESPONSE_ORDER.index("anonymize")

RELAYED_NOTIFICATIONS = frozenset({"notifications/progress", "notifications/message"})
Notify = Callable[[str, dict[str, Any]], Awaitable[None]]  # a call's notification sink (method, params)

# tenant id → scope → stage → the fields set there (the snapshot's copy of the stored policies)
Policies = Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]


class Pipeline:
    def __init__(
        self,
        rate_limit: RateLimit,
        approval: Approval | None = None,
        plugins: Mapping[str, Stage] | None = None,
        detectors: Mapping[str, Detector] | None = None,
    ) -> None:
        self.approval = approval or Approval()
        self._dlp = Dlp(detectors)
        self._anonymize = Anonymize()
        builtin: dict[str, Stage] = {
            "cedar": Cedar(),
            "rate_limit": rate_limit,
            "schema_guard": SchemaGuard(),
            "approval": self.approval,
            "anonymize": self._anonymize,
            "dlp": self._dlp,
            "inspect": Inspect(),
        }
        custom = dict(plugins or {})
        if BUILTIN & custom.keys():
            raise ValueError(f"plugins cannot replace built-in stages: {sorted(BUILTIN & custom.keys())}")
        self.plugin_names = frozenset(custom)
        self._request = tuple(builtin[n] for n in REQUEST_ORDER) + tuple(custom.values())
        self._response = tuple(custom.values()) + tuple(builtin[n] for n in RESPONSE_ORDER)
        self._settings: dict[tuple[str, str, str, str], Mapping[str, Any]] = {}
        self._policies: Policies | None = None

    def stages(self) -> dict[str, Stage]:
        """Every stage by name (built-in and plugins)."""
        return {stage.name: stage for stage in (*self._request, *self._response)}

    def settings(self, policies: Policies, tenant_id: str, server: str, origin: str, item: str) -> Mapping[str, Any]:
        """Every stage's settings for one item; computed once per snapshot (policies change only with it)."""
        if policies is not self._policies:
            self._settings, self._policies = {}, policies
        key = (tenant_id, server, origin, item)
        found = self._settings.get(key)
        if found is None:
            try:
                found = merge(policies.get(tenant_id, {}), scope_chain(server, origin, item))
            except ValidationError:  # each policy was valid when stored; refuse rather than guess
                raise PolicyDenied(
                    f"the policies that apply to {origin}/{item} do not combine into valid settings; "
                    "an administrator must correct them"
                ) from None
            missing = sorted(found.keys() - STAGE_SETTINGS.keys() - self.plugin_names)
            if missing:
                # A policy for a plugin stage this replica has not installed (a typo, a replica
                # without the package): deciding without it would let through what it exists to stop.
                raise PolicyDenied(
                    f"the policies that apply to {origin}/{item} name stage(s) {', '.join(missing)}, "
                    "not installed here; nothing is decided without them"
                )
            self._settings[key] = found
        return found

    async def request(self, ctx: CallContext) -> dict[str, Any] | None:
        """Run the request stages. Returns a result to answer with instead of forwarding (a stage
        asking the client for input), or None to forward `ctx.params`. A deny raises its error."""
        for stage in self._request:
            try:
                decision = await stage.on_request(ctx)
            except BastionError as error:  # a stage that refuses by raising is recorded like any refusal
                decision = Decision.deny(error)
            _keep(ctx, stage.name, "request", decision)
            if decision.action == "deny":
                raise decision.error or PolicyDenied(f"{stage.name}: {decision.reason}")
            if decision.params is not None:
                ctx.params = decision.params
            if decision.result is not None:
                return decision.result
        return None

    def notifications(self, ctx: CallContext, sink: Notify) -> Notify:
        """What the client reads of the origin's notifications during a call: progress and log
        messages only (nothing else is a call's to relay); DLP redacts what it finds in them (as in
        an origin's error); with `injection: block`, one carrying instructions aimed at the model
        is dropped. Counted in the trail once per kind of change."""

        async def screened(method: str, params: dict[str, Any]) -> None:
            if method not in RELAYED_NOTIFICATIONS:
                return
            decision, params = self._dlp.redacted(ctx, params, method)
            if decision.action != "allow":
                _keep_once(ctx, "dlp", decision)
            if decision.action == "deny":  # found where it cannot be redacted (a key): not relayed
                return
            verdict = instructions_in(ctx, params)
            if verdict == "block":
                _keep_once(ctx, "inspect", Decision.alert(f"{method} withheld: instructions aimed at the model"))
                return
            if verdict == "alert":
                _keep_once(ctx, "inspect", Decision.alert(f"{method} relayed with instructions aimed at the model"))
            await sink(method, params)

        return screened

    def questions(self, ctx: CallContext, requests: dict[str, Any]) -> dict[str, Any]:
        """An origin's questions to a handshake-era client (each relayed as a request on the call's
        stream), under DLP's response rules (what they block is not asked, what they redact is
        redacted), and with `injection: block` a question carrying instructions aimed at the model
        is not asked (the call is refused). A 2026-07-28 client gets them in the result, which DLP's
        response rules read too."""
        decision, screened = self._dlp.check_incoming(ctx, requests, "questions")
        if decision.action != "allow":
            _keep(ctx, "dlp", "response", decision)
        if decision.action == "deny":
            raise decision.error or PolicyDenied(f"dlp: {decision.reason}")
        verdict = instructions_in(ctx, screened)
        if verdict == "block":
            _keep(
                ctx, "inspect", "response", Decision.alert("origin question not asked: instructions aimed at the model")
            )
            raise PolicyDenied("the origin's question was not asked: it held instructions aimed at the model")
        if verdict == "alert":
            _keep(
                ctx, "inspect", "response", Decision.alert("origin question asked with instructions aimed at the model")
            )
        return self._anonymize.questions(ctx, dict(screened))  # the person reads their own values, as in results

    def answers(self, ctx: CallContext, responses: dict[str, Any]) -> dict[str, Any]:
        """A handshake-era client's answers to the origin's questions, checked by DLP's request
        rules as arguments are before they reach the origin (a 2026-07-28 client sends its answers
        in a retried request, which passes every request stage). A block raises its error."""
        decision, checked = self._dlp.check_outgoing(ctx, {"inputResponses": responses}, "answers")
        if decision.action != "allow":
            _keep(ctx, "dlp", "request", decision)
        if decision.action == "deny":
            raise decision.error or PolicyDenied(f"dlp: {decision.reason}")
        return dict(checked["inputResponses"])

    def rejected(self, ctx: CallContext, error: UpstreamRejected) -> UpstreamRejected:
        """The origin's own JSON-RPC error, screened by DLP before the client reads it, and by the
        injection check as its notifications are (clients show tool errors to the model too): with
        `injection: block`, one carrying instructions aimed at the model keeps its code only."""
        decision, screened = self._dlp.screen_error(ctx, error)
        if decision.action != "allow":
            _keep(ctx, "dlp", "response", decision)
        verdict = instructions_in(ctx, {"message": screened.message, "data": screened.raw_data})
        if verdict == "block":
            _keep(ctx, "inspect", "response", Decision.alert("origin error withheld: instructions aimed at the model"))
            return UpstreamRejected(
                screened.code, "the origin's error was withheld: it held instructions aimed at the model"
            )
        if verdict == "alert":
            _keep(
                ctx, "inspect", "response", Decision.alert("origin error relayed with instructions aimed at the model")
            )
        return screened

    async def response(self, ctx: CallContext, result: dict[str, Any]) -> dict[str, Any]:
        for stage in self._response:
            try:
                decision = await stage.on_response(ctx, result)
            except BastionError as error:
                decision = Decision.deny(error)
            _keep(ctx, stage.name, "response", decision)
            if decision.action == "deny":
                raise decision.error or PolicyDenied(f"{stage.name}: {decision.reason}")
            if decision.result is not None:
                result = decision.result
        return result


def _keep_once(ctx: CallContext, stage: str, decision: Decision) -> None:
    """A notification's decision in the trail, once per stage and reason (a stream may carry many)."""
    seen = ctx.state.setdefault("notification_decisions", set())
    if (stage, decision.reason) not in seen:
        seen.add((stage, decision.reason))
        _keep(ctx, stage, "response", decision)


def _keep(ctx: CallContext, stage: str, phase: Phase, decision: Decision) -> None:
    """Every decision in the call's trail, in order: stage, phase, action, reason, secret-free details."""
    entry: dict[str, Any] = {"stage": stage, "phase": phase, "action": decision.action}
    if decision.reason:
        entry["reason"] = decision.reason[:300]
    if decision.detail:
        entry.update(decision.detail)
    ctx.trail.append(entry)
