"""Policy as code: permit/forbid rules in Cedar over who calls which item with what arguments, for
the rules roles cannot express ("no refund above 100 without the finance team").

Evaluated by `cedarpy` (the Cedar engine's Python binding, an optional extra: `bastion-gateway[cedar]`).
Cedar denies unless a policy permits, so a scope that turns this stage on writes its permits too.
The request Cedar sees:

    principal  User::"<user id>"           attrs: name, tenant
    action     Action::"tools/call" (or resources/read, prompts/get)
    resource   Tool::"<origin>/<name>"     (Resource:: / Prompt:: for the others); attrs: origin, server
    context    {server, origin, item, arguments}   (floats as strings, nulls dropped: Cedar has neither;
                                                    keys starting "__" dropped: Cedar's JSON reads them
                                                    as entity or extension escapes)

A policy set that does not parse is refused when it is stored. An evaluation error denies: Cedar
skips a policy whose condition errors (a string compared with a number), which would let a
`forbid` be dodged by sending a value of the wrong type.
"""

from __future__ import annotations

from typing import Any

from bastion.errors import BadRequest, PolicyDenied, Unavailable
from bastion.pipeline.base import ALLOW, CallContext, Decision, StageBase
from bastion.pipeline.config import CedarSettings

__all__ = ["Cedar", "check_policies"]

_TYPES = {"tool": "Tool", "resource": "Resource", "resource_template": "Resource", "prompt": "Prompt"}


def _engine() -> Any:
    try:
        import cedarpy  # optional extra
    except ImportError:
        return None
    return cedarpy


def check_policies(text: str) -> None:
    """BadRequest when `text` is not a Cedar policy set (or Cedar is not installed)."""
    cedarpy = _engine()
    if cedarpy is None:
        raise BadRequest("the cedar stage needs the cedar extra: pip install 'bastion-gateway[cedar]'")
    try:
        cedarpy.PolicySet.from_str(text)
    except ValueError as exc:
        raise BadRequest(f"the Cedar policies do not parse: {exc}") from None


class Cedar(StageBase):
    name = "cedar"

    def __init__(self) -> None:
        self._parsed: dict[str, Any] = {}

    async def on_request(self, ctx: CallContext) -> Decision:
        settings: CedarSettings = ctx.settings["cedar"]
        if not settings.enabled:
            return ALLOW
        cedarpy = _engine()
        if cedarpy is None:
            return Decision.deny(Unavailable("the cedar stage is on, but Cedar is not installed on this replica"))
        policies = self._policy_set(cedarpy, settings.policies)
        if policies is None:
            return Decision.deny(PolicyDenied("the Cedar policies of this scope do not parse; the call is denied"))
        kind = _TYPES.get(ctx.item.kind, "Tool")
        item = f"{ctx.item.origin}/{ctx.item.upstream_name}"
        request = {
            "principal": {"type": "User", "id": ctx.principal_id},
            "action": {"type": "Action", "id": ctx.method},
            "resource": {"type": kind, "id": item},
            "context": {
                "server": ctx.server,
                "origin": ctx.item.origin,
                "item": ctx.item.upstream_name,
                "arguments": _cedar_value(ctx.arguments),
            },
        }
        if ctx.method == "resources/read":  # the URI read, not only the template it matched
            request["context"]["uri"] = str(ctx.params.get("uri", ""))
        entities = [
            {
                "uid": {"type": "User", "id": ctx.principal_id},
                "attrs": {"name": ctx.principal_name, "tenant": ctx.tenant_id},
                "parents": [],
            },
            {
                "uid": {"type": kind, "id": item},
                "attrs": {"origin": ctx.item.origin, "server": ctx.server},
                "parents": [],
            },
        ]
        result = cedarpy.is_authorized(request, policies, entities)
        errors = list(result.diagnostics.errors)
        if result.allowed and not errors:
            return Decision("allow", "permitted by " + ", ".join(result.diagnostics.reasons))
        why = (
            "the Cedar policies could not evaluate this call (a value of an unexpected type?)"
            if errors
            else f"forbidden by Cedar policy {', '.join(result.diagnostics.reasons)}"
            if result.diagnostics.reasons
            else "no Cedar policy permits this call"
        )
        return Decision.deny(
            PolicyDenied(f"{ctx.item.exposed_name!r} is not allowed: {why}"),
            detail={"policies": list(result.diagnostics.reasons)},
        )

    def _policy_set(self, cedarpy: Any, text: str) -> Any:
        if text not in self._parsed:
            if len(self._parsed) > 256:
                self._parsed.clear()
            try:
                self._parsed[text] = cedarpy.PolicySet.from_str(text)
            except ValueError:
                self._parsed[text] = None
        return self._parsed[text]


def _cedar_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _cedar_value(v) for k, v in value.items() if v is not None and not str(k).startswith("__")}
    if isinstance(value, list):
        return [_cedar_value(v) for v in value if v is not None]
    if isinstance(value, float):
        return str(value)
    return value
