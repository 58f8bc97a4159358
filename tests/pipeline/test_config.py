"""Policies merge from the most general scope to the most specific, field by field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bastion.errors import BadRequest
from bastion.pipeline.config import (
    DlpSettings,
    RateLimitSettings,
    merge,
    scope_chain,
    validate_scope,
    validate_settings,
)


def test_the_most_specific_scope_wins_field_by_field() -> None:
    policies = {
        "global": {"rate_limit": {"per_principal": "100/minute", "per_server": "1000/minute"}},
        "server:srv": {"rate_limit": {"per_principal": "50/minute"}},
        "tool:shop/refund": {"rate_limit": {"per_tool": "5/minute"}},
        "tool:shop/other": {"rate_limit": {"per_principal": "1/minute"}},
    }
    merged = merge(policies, scope_chain("srv", "shop", "refund"))["rate_limit"]
    assert merged == RateLimitSettings(per_principal="50/minute", per_server="1000/minute", per_tool="5/minute")


def test_a_stage_no_policy_names_keeps_its_defaults() -> None:
    merged = merge({}, scope_chain("srv", "shop", "refund"))
    assert merged["dlp"] == DlpSettings()
    assert merged["dlp"].request["aws_access_key"] == "block"
    assert merged["approval"].mode == "auto"


def test_settings_are_checked_by_the_stages_model_before_they_are_stored() -> None:
    with pytest.raises(ValidationError, match="limits notation"):
        validate_settings("rate_limit", {"per_principal": "often"}, {})
    with pytest.raises(ValidationError, match="does not compile"):
        validate_settings("dlp", {"custom": [{"name": "badge", "pattern": "(unclosed"}]}, {})
    with pytest.raises(ValidationError, match="no backreferences or lookaround"):  # RE2 runs in linear time
        validate_settings("dlp", {"custom": [{"name": "twice", "pattern": r"(a)\1"}]}, {})
    with pytest.raises(ValidationError, match="matches empty text"):  # it would match at every position
        validate_settings("dlp", {"custom": [{"name": "maybe", "pattern": r"\d*"}]}, {})
    with pytest.raises(ValidationError, match="Extra inputs"):
        validate_settings("approval", {"mode": "always", "colour": "red"}, {})
    with pytest.raises(BadRequest, match="unknown stage 'nonesuch'"):
        validate_settings("nonesuch", {}, {})
    assert validate_settings("watermark", {"anything": 1}, {"watermark": None}) == {"anything": 1}


@pytest.mark.parametrize("scope", ["global", "server:demo", "origin:inventory", "tool:inventory/refund_order"])
def test_the_four_scopes_are_accepted(scope: str) -> None:
    assert validate_scope(scope) == scope


@pytest.mark.parametrize("scope", ["", "tenant:x", "server:", "tool:inventory", "server:a b"])
def test_anything_else_is_refused_with_the_forms_named(scope: str) -> None:
    with pytest.raises(BadRequest, match="server:<slug>"):
        validate_scope(scope)


def test_a_narrow_dlp_policy_adds_to_the_defaults_instead_of_replacing_them() -> None:
    policies: dict[str, dict[str, dict[str, Any]]] = {
        "global": {"dlp": {"custom": [{"name": "badge", "pattern": "B-[0-9]+"}]}},
        "tool:shop/refund": {
            "dlp": {"request": {"email": "block"}, "custom": [{"name": "case", "pattern": "C-[0-9]+"}]}
        },
    }
    merged = merge(policies, scope_chain("srv", "shop", "refund"))["dlp"]
    assert merged.request["email"] == "block"
    assert merged.request["aws_access_key"] == "block" and merged.request["*"] == "alert"  # defaults kept
    assert [c.name for c in merged.custom] == ["badge", "case"]


def test_cedar_policies_of_every_scope_apply_together() -> None:
    forbid = 'forbid(principal, action, resource == Tool::"shop/refund");'
    policies: dict[str, dict[str, dict[str, Any]]] = {
        "global": {"cedar": {"enabled": True, "policies": forbid}},
        "tool:shop/refund": {"cedar": {"policies": "permit(principal, action, resource);"}},
    }
    merged = merge(policies, scope_chain("srv", "shop", "refund"))["cedar"]
    assert "forbid" in merged.policies and "permit" in merged.policies
    # A narrower scope cannot switch off what binds every tool.
    policies["tool:shop/refund"]["cedar"]["enabled"] = False
    merged = merge(policies, scope_chain("srv", "shop", "refund"))["cedar"]
    assert merged.enabled and "forbid" in merged.policies


def test_an_action_for_a_detector_nobody_runs_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown detectors"):
        validate_settings("dlp", {"request": {"emial": "block"}}, {})
    with pytest.raises(ValidationError, match="unknown detectors"):
        validate_settings("anonymize", {"detectors": ["emial"]}, {})
    assert validate_settings("dlp", {"request": {"badge": "block"}, "custom": [{"name": "badge", "pattern": "x"}]}, {})
