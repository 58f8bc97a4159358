"""The permission language and the decisions made from it (pure: no server)."""

from __future__ import annotations

import pytest

from bastion.errors import BadRequest
from bastion.governance.access import Member, Placement, may_use
from bastion.governance.permissions import BUILTIN_ROLES, CONTROL_ACTIONS, Grants, parse_permission


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("origins:manage", ("origins:manage", "*")),
        ("tools:call", ("tools:call", "*")),
        ("tools:call@server:demo", ("tools:call", "server:demo")),
        ("prompts:get@origin:inventory", ("prompts:get", "origin:inventory")),
        ("tools:call@tool:inventory/refund_order", ("tools:call", "tool:inventory/refund_order")),
        (
            "resources:read@resource:inventory/inventory://warehouses",
            ("resources:read", "resource:inventory/inventory://warehouses"),
        ),
    ],
)
def test_permissions_parse(text: str, parsed: tuple[str, str]) -> None:
    assert parse_permission(text) == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("tools:delete", "unknown action"),
        ("origins:manage@server:demo", "take no target"),
        ("tools:call@server:", "a target is"),
        ("tools:call@prompt:inventory/x", "an item target is 'tool:"),
        ("tools:call@tool:refund_order", "an item target is"),
    ],
)
def test_malformed_permissions_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_permission(text)
    assert reason in refused.value.message


def test_nothing_is_allowed_without_a_grant() -> None:
    nobody = Grants.of_roles([], {})
    assert not nobody.may("origins:read")
    assert not nobody.may_use("tool", "demo", "inventory", "list_stock")
    assert Grants.of_roles(["no-such-role"], {}).pairs == frozenset()


def test_a_grant_matches_its_target_and_nothing_wider() -> None:
    one_tool = Grants(frozenset({parse_permission("tools:call@tool:inventory/list_stock")}))
    assert one_tool.may_use("tool", "demo", "inventory", "list_stock")
    assert one_tool.may_use("tool", "other-server", "inventory", "list_stock")  # the origin's tool, anywhere
    assert not one_tool.may_use("tool", "demo", "inventory", "refund_order")
    assert not one_tool.may_use("tool", "demo", "crm", "list_stock")
    assert not one_tool.may_use("prompt", "demo", "inventory", "list_stock")
    on_server = Grants(frozenset({parse_permission("tools:call@server:demo")}))
    assert on_server.may_use("tool", "demo", "crm", "anything")
    assert not on_server.may_use("tool", "shop", "crm", "anything")
    assert not on_server.may("servers:read")


def test_built_in_roles() -> None:
    platform = Grants.of_roles(["platform-admin"], {})
    assert all(platform.may(action) for action in CONTROL_ACTIONS)
    tenant = Grants.of_roles(["tenant-admin"], {})
    assert not tenant.may("tenants:manage") and tenant.may("connectors:approve")
    auditor = Grants.of_roles(["auditor"], {})
    assert auditor.may("audit:read") and not auditor.may_use("tool", "s", "o", "t")
    assert set(BUILTIN_ROLES) == {"platform-admin", "tenant-admin", "connector-admin", "publisher", "member", "auditor"}


def test_custom_roles_and_token_limits_combine_as_an_intersection() -> None:
    custom = {"reader": frozenset({parse_permission("tools:call@origin:inventory")})}
    member = Member("u1", "t1", Grants.of_roles(["reader"], custom))
    inventory = ("inventory", Placement("t1"))
    assert may_use(member, None, "tool", "demo", inventory, "list_stock")
    limit = Grants(frozenset({parse_permission("tools:call@tool:inventory/get_order")}))
    assert not may_use(member, limit, "tool", "demo", inventory, "list_stock")
    assert may_use(member, limit, "tool", "demo", inventory, "get_order")
    # A limit cannot add what the roles do not grant.
    wide = Grants(frozenset({parse_permission("prompts:get")}))
    assert not may_use(member, wide, "prompt", "demo", inventory, "advice")


def test_visibility() -> None:
    alice = Member("alice", "t1", Grants(frozenset()), team_ids=frozenset({"finance"}))
    assert alice.sees(Placement("t1"))
    assert not alice.sees(Placement("t2"))  # another tenant, whatever its visibility
    assert alice.sees(Placement("t1", "team", team_ids=frozenset({"finance", "ops"})))
    assert not alice.sees(Placement("t1", "team", team_ids=frozenset({"ops"})))
    assert not alice.sees(Placement("t1", "private", owner_id="bob"))
    assert alice.sees(Placement("t1", "private", owner_id="alice"))
    assert not alice.sees(Placement("t2", "private", owner_id="alice"))


def test_wider_grants_cover_narrower_ones() -> None:
    everything = Grants.of_roles(["member"], {})
    assert everything.covers(parse_permission("tools:call@tool:inventory/refund_order"))
    on_origin = Grants(frozenset({parse_permission("tools:call@origin:inventory")}))
    assert on_origin.covers(parse_permission("tools:call@tool:inventory/refund_order"))
    assert not on_origin.covers(parse_permission("tools:call@tool:crm/refund_order"))
    assert not on_origin.covers(parse_permission("tools:call"))
    assert not on_origin.covers(parse_permission("prompts:get@prompt:inventory/advice"))
    assert not everything.covers(parse_permission("users:manage"))
