"""Pipeline policies in the console: what is set at which scope, what each stage does, and a form to set one.

The form stores through `PolicyAdmin.put`, exactly as `PUT /api/policies/{stage}?scope=`
does, so the stage's own settings model decides what is valid: JSON that does not parse, or
settings the stage refuses (an unknown DLP detector, a rate not in the limits notation), are
a 422 with the message next to the textarea, and nothing is stored.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from bastion.admin.actor import Actor
from bastion.admin.deps import policies_of
from bastion.admin.policies import PolicyIn, PolicyOut
from bastion.console.forms import FormData, read_form
from bastion.console.render import page
from bastion.console.route import ConsoleRoute
from bastion.console.viewer import CurrentViewer, Viewer
from bastion.errors import BadRequest, BastionError
from bastion.pipeline.config import BASELINE_NAMES, STAGE_SETTINGS, validate_scope

__all__ = ["EXAMPLES", "STAGES", "router"]

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)

_NOTICES = {
    "saved": "The policy is stored: every replica applies it from its next request.",
    "deleted": "The policy is deleted: the scope inherits the stage's settings again.",
}

# The pipeline's stages in the order a call meets them (README, "The policy pipeline").
STAGES: dict[str, str] = {
    "rate_limit": "Moving windows per person (per_principal), per person and item (per_tool) and per server "
    "(per_server), in the limits notation (30/minute, 5/second, 1000/day). Over the limit: HTTP 429 with "
    "Retry-After.",
    "schema_guard": "Checks arguments against the item's pinned input schema: wrong types, missing fields, "
    "undeclared properties, strings over max_string_length.",
    "cedar": "Allow/deny rules in Cedar over principal, action, item and arguments. Cedar denies unless a policy "
    "permits, so a scope that turns it on writes its permit too.",
    "approval": "Asks the person before a side-effecting call (mode auto: tools annotated destructiveHint; "
    "always; once_per_session; never). Only an explicit approval lets the call through.",
    "anonymize": "Replaces the values the named detectors find with per-call stand-ins before the origin sees "
    "them, and restores them in the result.",
    "dlp": "Data-loss prevention: per detector and direction (request: arguments, response: results) one of "
    "block, redact, mask, alert, off; '*' covers every detector not named. Extra regex detectors go in custom.",
    "inspect": "Checks results: over max_result_bytes withheld, prompt-injection markers recorded or blocked, "
    "spotlight wraps text in untrusted-data delimiters (a nonce per call).",
}

# What an operator types for each stage (each one valid: tests/console/test_policies_and_audit.py).
EXAMPLES: dict[str, dict[str, Any]] = {
    "rate_limit": {"per_principal": "30/minute", "per_tool": "5/second"},
    "schema_guard": {"max_string_length": 10000},
    "cedar": {"enabled": True, "policies": "permit(principal, action, resource);"},
    "approval": {"mode": "always", "timeout_seconds": 60},
    "anonymize": {"enabled": True, "detectors": ["email", "iban"]},
    "dlp": {
        "request": {"email": "redact", "ticket_id": "block"},
        "response": {"*": "mask"},
        "custom": [{"name": "ticket_id", "pattern": "TCK-[0-9]{6}"}],
    },
    "inspect": {"injection": "block", "spotlight": True},
}

_SCOPE_ORDER = ("global", "server:", "origin:", "tool:")  # most general first, as they merge


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _scope_rank(scope: str) -> int:
    return next((i for i, prefix in enumerate(_SCOPE_ORDER) if scope.startswith(prefix)), len(_SCOPE_ORDER))


def _field_kind(schema: dict[str, Any]) -> str:
    """A short reading of one JSON Schema property: its type, or the values it takes."""
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    if "anyOf" in schema:
        return " or ".join(_field_kind(option) for option in schema["anyOf"])
    kind = str(schema.get("type", "value"))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "detector → " + _field_kind(schema["additionalProperties"])
    if kind == "array":
        return "list"
    return kind


def _stage_cards(described: dict[str, Any]) -> list[dict[str, Any]]:
    ordered = [*(name for name in STAGES if name in described), *sorted(set(described) - set(STAGES))]
    cards = []
    for name in ordered:
        schema = described[name]
        model = STAGE_SETTINGS.get(name)
        defaults = model().model_dump(mode="json") if model is not None else {}  # default factories too
        fields = [
            {
                "name": field,
                "kind": _field_kind(prop),
                "default": json.dumps(defaults[field] if field in defaults else prop.get("default")),
                "description": prop.get("description", ""),
            }
            for field, prop in schema.get("properties", {}).items()
        ]
        cards.append(
            {
                "name": name,
                "does": STAGES.get(name, "A plugin stage: it checks its own settings when it is built."),
                "fields": fields,
                "example": _pretty(EXAMPLES[name]) if name in EXAMPLES else "",
            }
        )
    return cards


def _groups(policies: list[PolicyOut]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Policies by scope, the most general scope first (the order they merge in), then by stage."""
    by_scope: dict[str, list[dict[str, Any]]] = {}
    for policy in sorted(policies, key=lambda p: (_scope_rank(p.scope), p.scope, p.stage)):
        by_scope.setdefault(policy.scope, []).append({"policy": policy, "settings": _pretty(policy.settings)})
    return list(by_scope.items())


async def _page(
    request: Request,
    viewer: Viewer,
    actor: Actor,
    *,
    values: FormData | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    admin = policies_of(request)
    stored = await admin.list(actor)
    cards = _stage_cards(admin.stages())
    values = values or {"scope": "global", "stage": "rate_limit", "settings": ""}
    stage = str(values.get("stage") or "")
    example = EXAMPLES.get(stage, EXAMPLES["rate_limit"])
    return page(
        request,
        "policies.html",
        viewer=viewer,
        status=status,
        notices=_NOTICES,
        groups=_groups(stored),
        stages=cards,
        detectors=sorted(BASELINE_NAMES),
        may_manage=viewer.may("policies:manage"),
        placeholder=json.dumps(example),
        examples={name: json.dumps(EXAMPLES[name]) for name in ("rate_limit", "dlp")},
        values=values,
        errors=errors or {},
    )


@router.get("/policies")
async def policies(
    request: Request,
    viewer: CurrentViewer,
    scope: Annotated[str, Query(max_length=600)] = "global",
    stage: Annotated[str, Query(max_length=64)] = "rate_limit",
) -> Response:
    """The list, the stages, and the form; an Edit link (`?scope=&stage=`) loads that policy into it."""
    actor = viewer.actor("policies:read")
    values: FormData = {"scope": scope, "stage": stage, "settings": ""}
    if {"scope", "stage"} <= request.query_params.keys():  # asked for: a plain visit starts empty
        for policy in await policies_of(request).list(actor):
            if (policy.scope, policy.stage) == (scope, stage):
                values["settings"] = _pretty(policy.settings)
    return await _page(request, viewer, actor, values=values)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _settings_error(error: ValidationError) -> str:
    """The stage model's complaints, each naming its field (`per_principal: ...`), in one message."""
    messages = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        messages.append(f"{where}: {message}" if where else message)
    return "; ".join(messages)


@router.post("/policies")
async def put(request: Request, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("policies:manage")
    form = await read_form(request, viewer)
    scope, stage, text = (str(form.get(key) or "").strip() for key in ("scope", "stage", "settings"))
    values: FormData = {"scope": scope, "stage": stage, "settings": text}
    admin = policies_of(request)
    errors: dict[str, str] = {}
    try:
        validate_scope(scope)
    except BadRequest as error:
        errors["scope"] = error.message
    if stage not in admin.stages():
        errors["stage"] = f"unknown stage {stage!r}: choose one from the list"
    settings: Any = None
    try:
        settings = json.loads(text or "{}", parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        errors["settings"] = f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
    except ValueError as error:
        errors["settings"] = f"not valid JSON: {error}"
    except RecursionError:  # the decoder's own limit: `[[[[…` a thousand deep
        errors["settings"] = "not valid JSON here: nested too deeply"
    else:
        if not isinstance(settings, dict):
            errors["settings"] = 'the settings are a JSON object of the stage\'s fields, e.g. {"enabled": true}'
    if not errors:
        try:
            await admin.put(actor, scope, stage, PolicyIn(settings=settings))
        except ValidationError as error:
            errors["settings"] = _settings_error(error)
        except BastionError as error:  # Cedar policies that do not parse, or Cedar not installed
            errors["settings"] = error.message
    if errors:
        return await _page(request, viewer, actor, values=values, errors=errors, status=422)
    return RedirectResponse("/admin/policies?notice=saved", status_code=303)


@router.post("/policies/delete")
async def delete(request: Request, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("policies:manage")
    form = await read_form(request, viewer)
    await policies_of(request).delete(actor, str(form.get("scope") or ""), str(form.get("stage") or ""))
    return RedirectResponse("/admin/policies?notice=deleted", status_code=303)
