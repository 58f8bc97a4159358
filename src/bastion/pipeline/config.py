"""What each stage is told to do, per scope, and how scopes merge: most specific wins.

A policy is (scope, stage, settings). Scopes, from the most general to the most specific:

    global                      every call in the tenant
    server:<slug>               calls through one virtual server
    origin:<name>               calls to one origin's items, through any server
    tool:<origin>/<name>        one item, by the origin's name for it (tools, prompts, resources)

`merge` applies them in that order, field by field: a more specific scope overrides only the
fields it names. Two kinds of field combine instead of replacing, so a narrow policy cannot
silently undo a broad one: maps (DLP actions per detector) merge key by key over the defaults,
and lists of rules (DLP's custom detectors and plugins, Cedar policies) add up across scopes (a
`forbid` at the global scope binds every tool). Settings are validated by the models below when
they are stored, so a bad policy is a 422 at the API, never a surprise on the hot path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from limits import parse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bastion.errors import BadRequest
from bastion.pipeline.dlp_detectors import BASELINE, linear_pattern

BASELINE_NAMES = frozenset(detector.name for detector in BASELINE)

__all__ = [
    "BASELINE_NAMES",
    "STAGE_SETTINGS",
    "AnonymizeSettings",
    "ApprovalSettings",
    "CedarSettings",
    "CustomDetector",
    "DlpSettings",
    "InspectSettings",
    "RateLimitSettings",
    "SchemaGuardSettings",
    "merge",
    "scope_chain",
    "validate_scope",
    "validate_settings",
]

DlpAction = Literal["block", "redact", "mask", "alert", "off"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _limit(rule: str | None) -> str | None:
    if rule is not None:
        try:
            parse(rule)
        except ValueError:
            raise ValueError(f"{rule!r} is not a rate in the limits notation, e.g. '60/minute'") from None
    return rule


class RateLimitSettings(_Settings):
    enabled: bool = True
    per_principal: str | None = Field("600/minute", description="Calls per person across the virtual server.")
    per_tool: str | None = Field(None, description="Calls per person to one item.")
    per_server: str | None = Field(None, description="Calls to the virtual server by everyone together.")

    _check = field_validator("per_principal", "per_tool", "per_server")(_limit)


class ApprovalSettings(_Settings):
    mode: Literal["auto", "always", "once_per_session", "never"] = Field(
        "auto",
        description="auto: ask for tools annotated destructiveHint (and not readOnlyHint); always: ask for every "
        "call; once_per_session: ask on the first call of a session; never: do not ask.",
    )
    timeout_seconds: float = Field(120.0, gt=0, le=3600, description="How long the person has to answer.")


class SchemaGuardSettings(_Settings):
    enabled: bool = True
    max_string_length: int = Field(100_000, gt=0, description="Longest string argument, in characters.")
    reject_unknown_properties: bool = Field(
        True, description="Refuse arguments the input schema does not declare (unless it allows them itself)."
    )


class CustomDetector(_Settings):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    pattern: str = Field(max_length=1000, description="A regular expression (RE2 syntax: matched in linear time).")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        linear_pattern(pattern)  # ValueError (a 422) for what RE2 does not take
        return pattern


_SECRETS = ("aws_access_key", "private_key", "jwt", "api_token")


def _request_actions() -> dict[str, DlpAction]:
    """Secure by default: a secret in the arguments stops the call; personal data is recorded."""
    return {**dict.fromkeys(_SECRETS, "block"), "*": "alert"}


def _response_actions() -> dict[str, DlpAction]:
    """A secret an origin returns is redacted before the model reads it; personal data is recorded."""
    return {**dict.fromkeys(_SECRETS, "redact"), "*": "alert"}


class DlpSettings(_Settings):
    enabled: bool = True
    request: dict[str, DlpAction] = Field(
        default_factory=_request_actions,
        description="Action per detector on arguments; '*' for every detector not named.",
    )
    response: dict[str, DlpAction] = Field(
        default_factory=_response_actions,
        description="Action per detector on results; '*' for every detector not named.",
    )
    custom: tuple[CustomDetector, ...] = Field((), description="Extra detectors of this scope (regex).")
    plugins: tuple[str, ...] = Field(
        (), description="Detector classes by entry point name (group bastion.dlp_detectors)."
    )

    @model_validator(mode="after")
    def _known_detectors(self) -> DlpSettings:
        """An action for a detector nobody runs is a typo that would turn protection off: refused."""
        known = {*BASELINE_NAMES, "*", *(c.name for c in self.custom), *self.plugins}
        unknown = sorted((self.request.keys() | self.response.keys()) - known)
        if unknown:
            raise ValueError(
                f"unknown detectors {unknown}: use {sorted(BASELINE_NAMES)}, '*', or define them in "
                "custom (or plugins) in the same policy"
            )
        return self


class AnonymizeSettings(_Settings):
    enabled: bool = False
    detectors: tuple[str, ...] = Field(
        ("email", "phone", "iban", "payment_card", "us_ssn", "national_id"),
        description="Values the origin must not see: replaced by pseudonyms, restored in the result.",
    )

    @field_validator("detectors")
    @classmethod
    def _baseline_only(cls, detectors: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(detectors) - BASELINE_NAMES)
        if unknown:
            raise ValueError(f"unknown detectors {unknown}: anonymization uses {sorted(BASELINE_NAMES)}")
        return detectors


class InspectSettings(_Settings):
    injection: Literal["off", "alert", "block"] = Field(
        "alert", description="Prompt-injection markers in results: record them, or refuse the result."
    )
    max_result_bytes: int = Field(4 * 1024 * 1024, gt=0, description="Largest result passed to the client.")
    spotlight: bool = Field(False, description="Wrap text results in untrusted-content delimiters.")


class CedarSettings(_Settings):
    enabled: bool = False
    policies: str = Field("", max_length=100_000, description="Cedar policies (permit/forbid) for this scope.")


# Fields that combine across scopes instead of being replaced (see the module docstring).
_MAPS: Mapping[str, frozenset[str]] = {"dlp": frozenset({"request", "response"})}
_LISTS: Mapping[str, frozenset[str]] = {"dlp": frozenset({"custom", "plugins"})}
_TEXTS: Mapping[str, frozenset[str]] = {"cedar": frozenset({"policies"})}
# Switches a narrower scope may turn on, never off: Cedar's policies add up across scopes, so a
# `forbid` written at the global scope binds every tool (a tool's `enabled: false` undid it).
_ONCE_ON: Mapping[str, frozenset[str]] = {"cedar": frozenset({"enabled"})}


def _combine(stage: str, name: str, before: Any, value: Any) -> Any:
    if before is None:
        return value
    if name in _MAPS.get(stage, frozenset()) and isinstance(before, dict) and isinstance(value, dict):
        return {**before, **value}
    if name in _LISTS.get(stage, frozenset()) and isinstance(before, list | tuple) and isinstance(value, list | tuple):
        return [*before, *(v for v in value if v not in before)]
    if name in _TEXTS.get(stage, frozenset()) and isinstance(before, str) and isinstance(value, str):
        return f"{before}\n{value}" if before and value else before or value
    if name in _ONCE_ON.get(stage, frozenset()) and before is True:
        return True
    return value


STAGE_SETTINGS: Mapping[str, type[_Settings]] = {
    "rate_limit": RateLimitSettings,
    "approval": ApprovalSettings,
    "schema_guard": SchemaGuardSettings,
    "anonymize": AnonymizeSettings,
    "dlp": DlpSettings,
    "inspect": InspectSettings,
    "cedar": CedarSettings,
}

_SCOPE = re.compile(r"global|server:[^\s/]{1,64}|origin:[^\s/]{1,64}|tool:[^\s/]{1,64}/\S{1,512}")


def validate_scope(scope: str) -> str:
    if not _SCOPE.fullmatch(scope):  # `$` alone would let a trailing newline through
        raise BadRequest(
            f"invalid policy scope {scope!r}: use global, server:<slug>, origin:<name> or tool:<origin>/<name>"
        )
    return scope


def validate_settings(stage: str, settings: Mapping[str, Any], plugin_stages: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as stored: only the fields given, each checked by the stage's model."""
    model = STAGE_SETTINGS.get(stage)
    if model is None:
        if stage in plugin_stages:
            return dict(settings)  # a plugin stage validates its own settings when it is built
        raise BadRequest(f"unknown stage {stage!r}: one of {', '.join(sorted({*STAGE_SETTINGS, *plugin_stages}))}")
    model.model_validate(settings)  # ValidationError names the field
    return dict(settings)


def scope_chain(server: str, origin: str, item: str) -> tuple[str, ...]:
    """The scopes that apply to one item, most general first."""
    return ("global", f"server:{server}", f"origin:{origin}", f"tool:{origin}/{item}")


def merge(policies: Mapping[str, Mapping[str, Mapping[str, Any]]], scopes: tuple[str, ...]) -> dict[str, Any]:
    """Stage name → its settings model (or a plain dict for a plugin stage), most specific wins.

    `policies` maps scope → stage → the fields set there."""
    fields: dict[str, dict[str, Any]] = {}
    for scope in scopes:  # the one place where "most specific wins" is decided
        for stage, values in policies.get(scope, {}).items():
            into = fields.setdefault(stage, {})
            for name, value in values.items():
                into[name] = _combine(stage, name, into.get(name), value)
    merged: dict[str, Any] = {stage: model() for stage, model in STAGE_SETTINGS.items()}
    for stage, values in fields.items():
        model = STAGE_SETTINGS.get(stage)
        if model is None:  # a plugin stage: its fields as stored
            merged[stage] = values
            continue
        for name in values.keys() & _MAPS.get(stage, frozenset()):  # maps merge over the defaults too
            values[name] = {**getattr(merged[stage], name), **values[name]}
        merged[stage] = model.model_validate(values)
    return merged
