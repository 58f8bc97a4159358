"""Connector approval, selected spaces, visibility, custom roles and token limits, end to end.

Every change here is made through the admin API and checked on the very next
MCP request: decisions come from the snapshot, which each change replaces.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.governance.people import Person, add_person, as_person, call, mcp
from tests.harness import STDIO_INVENTORY, Bastion, run_bastion


@pytest.fixture
def bastion(tmp_path: Path) -> Iterator[Bastion]:
    with run_bastion(tmp_path) as running:
        yield running


def _tools(bastion: Bastion, slug: str, token: str) -> set[str]:
    return {tool["name"] for tool in call(bastion, slug, token, "tools/list")["result"]["tools"]}


def _token_for(bastion: Bastion, person: Person, *servers: str, **limits: object) -> str:
    body = {"name": "t", "servers": list(servers), "user": person.name, **limits}
    return str(bastion.ok("POST", "/api/tokens", json=body)["token"])


def test_a_registered_origin_waits_for_approval_and_a_rejection_withdraws_it_at_once(bastion: Bastion) -> None:
    connectors = add_person(bastion, "cora", ["connector-admin"])
    publisher = add_person(bastion, "pete", ["publisher"])
    member = add_person(bastion, "mia", ["member"])
    body = {"name": "inventory", "transport": "stdio", "command": STDIO_INVENTORY}
    request = as_person(bastion, connectors, "POST", "/api/origins", json=body)
    assert request.status_code == 201
    origin = request.json()
    # A connector request: pending, yet discovered, so the reviewer sees what it would offer.
    assert origin["status"] == "pending" and origin["reviewed_by"] is None
    assert {"list_stock", "refund_order"} <= {item["name"] for item in origin["items"]}
    assert [o["id"] for o in bastion.ok("GET", "/api/origins?status=pending")] == [origin["id"]]

    server = as_person(bastion, publisher, "POST", "/api/servers", json={"slug": "shop"}).json()
    refused = as_person(
        bastion, publisher, "POST", f"/api/servers/{server['id']}/compose", json={"origin": "inventory"}
    )
    assert refused.status_code == 409 and "pending" in refused.json()["error"]["message"]
    # A publisher cannot approve it; a connector admin can.
    review = {"decision": "approve", "note": "vendor checked"}
    assert as_person(bastion, publisher, "POST", f"/api/origins/{origin['id']}/review", json=review).status_code == 403
    approved = as_person(bastion, connectors, "POST", f"/api/origins/{origin['id']}/review", json=review).json()
    assert (approved["status"], approved["reviewed_by"], approved["review_note"]) == (
        "approved",
        "cora",
        "vendor checked",
    )

    composed = as_person(
        bastion, publisher, "POST", f"/api/servers/{server['id']}/compose", json={"origin": "inventory"}
    )
    assert composed.status_code == 200
    assert as_person(bastion, publisher, "POST", f"/api/servers/{server['id']}/publish").status_code == 200
    token = _token_for(bastion, member, "shop")
    assert "list_stock" in _tools(bastion, "shop", token)
    assert "result" in call(bastion, "shop", token, "tools/call", name="list_stock", arguments={})

    # Rejected later: on the next request nothing of it is reachable, though the server stays published.
    as_person(bastion, connectors, "POST", f"/api/origins/{origin['id']}/review", json={"decision": "reject"})
    assert _tools(bastion, "shop", token) == set()
    reply = call(bastion, "shop", token, "tools/call", name="list_stock", arguments={})
    assert "unknown tool" in reply["error"]["message"]
    # A rejected origin is not contacted again.
    assert bastion.api("POST", f"/api/origins/{origin['id']}/refresh").status_code == 409


def test_an_origin_restricted_to_selected_teams_serves_only_their_members(bastion: Bastion) -> None:
    bastion.ok("POST", "/api/teams", json={"name": "finance"})
    inside = add_person(bastion, "fin", ["member"], teams=["finance"])
    outside = add_person(bastion, "ops", ["member"])
    bastion.add_origin("inventory", command=STDIO_INVENTORY, visibility="team", team_ids=["finance"])
    bastion.add_origin("echo", command=STDIO_INVENTORY)  # a second, tenant-wide origin
    bastion.publish_server(
        "shop", {"origin": "inventory"}, {"origin": "echo", "prefix": "echo_", "items": ["list_stock"]}
    )
    inside_token, outside_token = _token_for(bastion, inside, "shop"), _token_for(bastion, outside, "shop")

    assert "list_stock" in _tools(bastion, "shop", inside_token)
    assert "list_stock" not in _tools(bastion, "shop", outside_token)
    assert "echo_list_stock" in _tools(bastion, "shop", outside_token)
    reply = call(bastion, "shop", outside_token, "tools/call", name="list_stock", arguments={})
    assert "roles do not allow" in reply["error"]["message"]

    # Joining the team opens it on the next request; leaving closes it again.
    bastion.ok("PATCH", f"/api/users/{outside.id}", json={"teams": ["finance"]})
    assert "list_stock" in _tools(bastion, "shop", outside_token)
    bastion.ok("PATCH", f"/api/users/{outside.id}", json={"teams": []})
    assert "list_stock" not in _tools(bastion, "shop", outside_token)


def test_a_private_server_exists_only_for_its_owner(bastion: Bastion) -> None:
    owner = add_person(bastion, "olga", ["publisher", "member"])
    other = add_person(bastion, "otto", ["member"])
    bastion.add_origin("inventory", command=STDIO_INVENTORY)
    server = as_person(bastion, owner, "POST", "/api/servers", json={"slug": "mine", "visibility": "private"}).json()
    as_person(bastion, owner, "POST", f"/api/servers/{server['id']}/compose", json={"origin": "inventory"})
    as_person(bastion, owner, "POST", f"/api/servers/{server['id']}/publish")

    # Minted by its owner: no one else acts as the owner of something private (see test_acting_as_others).
    own = as_person(bastion, owner, "POST", "/api/tokens", json={"name": "t", "servers": ["mine"]}).json()["token"]
    assert "list_stock" in _tools(bastion, "mine", own)
    refused = mcp(bastion, "mine", _token_for(bastion, other, "mine"), "tools/list")
    assert refused.status_code == 404


def test_custom_roles_grant_single_items_and_losing_a_role_takes_effect_on_the_next_request(bastion: Bastion) -> None:
    bastion.add_origin("inventory", command=STDIO_INVENTORY)
    bastion.publish_server("shop", {"origin": "inventory"})
    role = {
        "name": "stock-reader",
        "permissions": ["tools:call@tool:inventory/list_stock", "resources:read@origin:inventory"],
    }
    bastion.ok("POST", "/api/roles", json=role)
    reader = add_person(bastion, "rita", ["stock-reader"])
    token = _token_for(bastion, reader, "shop")

    assert _tools(bastion, "shop", token) == {"list_stock"}
    assert "result" in call(bastion, "shop", token, "tools/call", name="list_stock", arguments={})
    assert "result" in call(bastion, "shop", token, "resources/read", uri="inventory://warehouses")
    denied = call(bastion, "shop", token, "tools/call", name="get_order", arguments={"order_id": "SO-1001"})
    assert "roles do not allow this tool: 'get_order'" in denied["error"]["message"]
    assert "error" in call(bastion, "shop", token, "prompts/get", name="reorder_advice", arguments={"sku": "W"})

    bastion.ok("PATCH", f"/api/users/{reader.id}", json={"roles": []})
    assert _tools(bastion, "shop", token) == set()
    bastion.ok("PATCH", f"/api/users/{reader.id}", json={"roles": ["stock-reader"]})
    bastion.ok("DELETE", "/api/roles/stock-reader")  # deleting the role takes its grants away too
    assert _tools(bastion, "shop", token) == set()


def test_a_token_limited_to_some_permissions_narrows_its_user(bastion: Bastion) -> None:
    bastion.add_origin("inventory", command=STDIO_INVENTORY)
    bastion.publish_server("shop", {"origin": "inventory"})
    member = add_person(bastion, "max", ["member"])
    narrow = _token_for(bastion, member, "shop", permissions=["tools:call@tool:inventory/get_order"])
    assert _tools(bastion, "shop", narrow) == {"get_order"}
    # The limit narrows, never widens: a member's token limited to tenant administration gains nothing.
    wide = _token_for(bastion, member, permissions=["users:manage"], scopes=["admin"])
    assert bastion.http.get("/api/users", headers={"authorization": f"Bearer {wide}"}).status_code == 403
    bad = bastion.api("POST", "/api/tokens", json={"name": "x", "permissions": ["tools:delete"]})
    assert bad.status_code == 422 and "unknown action" in bad.text


def test_roles_are_checked_when_granted(bastion: Bastion) -> None:
    admin_of_tenant = add_person(bastion, "tina", ["tenant-admin"])
    body = {"username": "evil", "password": "correct horse battery staple", "roles": ["platform-admin"]}
    refused = as_person(bastion, admin_of_tenant, "POST", "/api/users", json=body)
    assert refused.status_code == 403 and "platform-admin" in refused.json()["error"]["message"]
    unknown = bastion.api("POST", "/api/users", json={**body, "roles": ["wizard"]})
    assert unknown.status_code == 400 and "unknown roles: wizard" in unknown.json()["error"]["message"]
    custom = bastion.api("POST", "/api/roles", json={"name": "boss", "permissions": ["tenants:manage"]})
    assert custom.status_code == 400


def test_whoever_manages_users_cannot_grant_more_than_they_hold(bastion: Bastion) -> None:
    bastion.ok("POST", "/api/roles", json={"name": "helpdesk", "permissions": ["users:manage", "users:read"]})
    desk = add_person(bastion, "hal", ["helpdesk"])
    escalate = as_person(bastion, desk, "PATCH", f"/api/users/{desk.id}", json={"roles": ["tenant-admin"]})
    assert escalate.status_code == 403 and "grants what you do not hold" in escalate.json()["error"]["message"]
    body = {"username": "newbie", "password": "correct horse battery staple", "roles": ["member"]}
    assert as_person(bastion, desk, "POST", "/api/users", json=body).status_code == 403  # member calls tools
    allowed = as_person(bastion, desk, "POST", "/api/users", json={**body, "roles": ["helpdesk"]})
    assert allowed.status_code == 201
    assert {u["username"]: u["roles"] for u in bastion.ok("GET", "/api/users")}["hal"] == ["helpdesk"]


def _as_token(bastion: Bastion, token: str, method: str, path: str, **kwargs: object) -> httpx.Response:
    return bastion.http.request(method, path, headers={"authorization": f"Bearer {token}"}, **kwargs)  # type: ignore[arg-type]


def test_a_token_a_limited_token_creates_is_limited_as_much(bastion: Bastion) -> None:
    boss = add_person(bastion, "bea", ["tenant-admin"])
    bastion.add_origin("inventory", command=STDIO_INVENTORY)
    bastion.publish_server("shop", {"origin": "inventory"})
    limit = ["clients:manage", "tokens:create"]
    minter = _token_for(bastion, boss, permissions=limit, scopes=["admin"], allowed_cidrs=["127.0.0.0/8"])
    assert _as_token(bastion, minter, "GET", "/api/users").status_code == 403
    # Asked for nothing: the new token takes the creating token's limit and networks.
    child = _as_token(bastion, minter, "POST", "/api/tokens", json={"name": "escape", "scopes": ["admin"]})
    assert child.status_code == 201, child.text
    assert child.json()["permissions"] == limit and child.json()["allowed_cidrs"] == ["127.0.0.0/8"]
    assert _as_token(bastion, child.json()["token"], "GET", "/api/users").status_code == 403
    # Asked for more: refused, and nothing is created.
    admin_only = {"scopes": ["admin"]}
    wider = _as_token(
        bastion, minter, "POST", "/api/tokens", json={"name": "w", "permissions": ["users:read"], **admin_only}
    )
    assert wider.status_code == 403 and "users:read" in wider.json()["error"]["message"]
    elsewhere = {"name": "e", "allowed_cidrs": ["10.0.0.0/8"], **admin_only}
    outside = _as_token(bastion, minter, "POST", "/api/tokens", json=elsewhere)
    assert outside.status_code == 403 and "10.0.0.0/8" in outside.json()["error"]["message"]
    inside = {"name": "i", "allowed_cidrs": ["127.0.0.1/32"], "permissions": ["tokens:create"], **admin_only}
    assert _as_token(bastion, minter, "POST", "/api/tokens", json=inside).status_code == 201
    # Nor scopes or servers it lacks itself: this one carries admin only, and reaches no server.
    mcp = _as_token(bastion, minter, "POST", "/api/tokens", json={"name": "m", "scopes": ["mcp"]})
    assert mcp.status_code == 403 and "scope mcp" in mcp.json()["error"]["message"]
    reach = _as_token(bastion, minter, "POST", "/api/tokens", json={"name": "r", "servers": ["shop"], **admin_only})
    assert reach.status_code == 403 and "may not reach" in reach.json()["error"]["message"]
    names = [t["name"] for t in bastion.ok("GET", "/api/tokens")]
    assert not {"w", "e", "m", "r"} & set(names)
    service = {"name": "svc", "servers": ["shop"]}
    refused = _as_token(bastion, minter, "POST", "/api/oauth/clients", json=service)
    assert refused.status_code == 403 and "service clients" in refused.json()["error"]["message"]
    # A quota cannot be escaped by minting tokens whose uses it does not count.
    quota = _token_for(bastion, boss, scopes=["admin"], max_uses=5)
    counted = _as_token(bastion, quota, "POST", "/api/tokens", json={"name": "q", **admin_only})
    assert counted.status_code == 403 and "quota" in counted.json()["error"]["message"]


def test_a_token_limited_to_managing_users_cannot_grant_roles_beyond_its_limit(bastion: Bastion) -> None:
    boss = add_person(bastion, "ben", ["tenant-admin"])
    member = add_person(bastion, "mo", ["member"])
    desk = _token_for(bastion, boss, permissions=["users:manage", "users:read"], scopes=["admin"])
    raised = _as_token(bastion, desk, "PATCH", f"/api/users/{member.id}", json={"roles": ["tenant-admin"]})
    assert raised.status_code == 403 and "grants what you do not hold" in raised.json()["error"]["message"]
    assert {u["username"]: u["roles"] for u in bastion.ok("GET", "/api/users")}["mo"] == ["member"]


def test_a_tenant_administrator_cannot_take_roles_above_their_own(bastion: Bastion) -> None:
    tina = add_person(bastion, "tina", ["tenant-admin"])
    pat = add_person(bastion, "pat", ["platform-admin"])
    demote = as_person(bastion, tina, "PATCH", f"/api/users/{pat.id}", json={"roles": ["member"]})
    assert demote.status_code == 403 and "platform-admin" in demote.json()["error"]["message"]
    assert as_person(bastion, pat, "GET", "/api/tenants").status_code == 200  # still a platform administrator
    bastion.ok("PATCH", f"/api/users/{pat.id}", json={"roles": ["member"]})  # a platform administrator may


def test_a_deleted_role_leaves_its_holders_and_a_new_role_grants_only_what_its_maker_holds(bastion: Bastion) -> None:
    bastion.ok("POST", "/api/roles", json={"name": "role-admin", "permissions": ["roles:manage"]})
    bastion.ok("POST", "/api/roles", json={"name": "helpdesk", "permissions": ["users:read"]})
    rita = add_person(bastion, "rita", ["role-admin", "helpdesk"])
    everything = {"name": "helpdesk", "permissions": ["users:manage", "users:read", "roles:manage"]}
    assert as_person(bastion, rita, "DELETE", "/api/roles/helpdesk").status_code == 204
    assert {u["username"]: u["roles"] for u in bastion.ok("GET", "/api/users")}["rita"] == ["role-admin"]
    bastion.ok("POST", "/api/roles", json={"name": "auditors", "permissions": ["audit:read"]})
    above = as_person(bastion, rita, "DELETE", "/api/roles/auditors")  # rita does not hold audit:read
    assert above.status_code == 403 and "audit:read" in above.json()["error"]["message"]
    widened = as_person(bastion, rita, "POST", "/api/roles", json=everything)
    assert widened.status_code == 403 and "users:manage" in widened.json()["error"]["message"]
    # Even a role made again under the old name by an administrator grants rita nothing.
    bastion.ok("POST", "/api/roles", json=everything)
    body = {"username": "newbie", "password": "correct horse battery staple", "roles": ["member"]}
    assert as_person(bastion, rita, "POST", "/api/users", json=body).status_code == 403


def test_a_server_a_member_cannot_see_is_as_missing_when_a_token_names_it(bastion: Bastion) -> None:
    owner = add_person(bastion, "olga", ["tenant-admin"])
    member = add_person(bastion, "mel", ["member"])
    hidden = as_person(bastion, owner, "POST", "/api/servers", json={"slug": "hidden", "visibility": "private"})
    assert hidden.status_code == 201, hidden.text
    for ref in ("hidden", hidden.json()["id"], "missing"):
        body = {"name": "t", "servers": [ref]}
        response = as_person(bastion, member, "POST", "/api/tokens", json=body)
        assert response.status_code == 404 and response.json()["error"]["message"] == f"no virtual server {ref!r}"
    own = as_person(bastion, owner, "POST", "/api/tokens", json={"name": "t", "servers": ["hidden"]})
    assert own.status_code == 201


def test_a_minted_jwt_for_another_audience_than_the_origin_is_a_connector_decision(bastion: Bastion) -> None:
    bastion.ok("POST", "/api/roles", json={"name": "registrar", "permissions": ["origins:manage", "origins:read"]})
    reg = add_person(bastion, "reg", ["registrar"])
    body = {"name": "weather", "transport": "http", "url": "http://127.0.0.1:9/mcp"}
    elsewhere = {"mode": "jwt", "audience": "https://payroll.internal.example/mcp"}
    refused = as_person(bastion, reg, "POST", "/api/origins", json={**body, "auth": elsewhere})
    assert refused.status_code == 403 and "connectors:approve" in refused.json()["error"]["message"]
    assert bastion.api("GET", "/api/origins/weather").status_code == 404  # nothing stored
    # Another path on the origin's own host: what another origin there could be (and accept).
    beside = {"mode": "jwt", "audience": "http://127.0.0.1:9/hr/mcp"}
    assert as_person(bastion, reg, "POST", "/api/origins", json={**body, "auth": beside}).status_code == 403
    own = {"mode": "jwt", "audience": "HTTP://127.0.0.1:9/mcp"}  # the origin's own URL, however spelled
    created = as_person(bastion, reg, "POST", "/api/origins", json={**body, "auth": own})
    assert created.status_code == 201, created.text
    origin_id = created.json()["id"]
    later = as_person(bastion, reg, "PUT", f"/api/origins/{origin_id}/auth", json=elsewhere)
    assert later.status_code == 403
    assert bastion.api("PUT", f"/api/origins/{origin_id}/auth", json=elsewhere).status_code == 200  # an approver may


def test_the_credential_of_an_approved_origin_is_changed_only_by_an_approver(bastion: Bastion) -> None:
    """Whose account upstream every user's calls act in is what the approval was about."""
    bastion.ok("POST", "/api/roles", json={"name": "keeper", "permissions": ["origins:manage", "origins:read"]})
    keeper = add_person(bastion, "kip", ["keeper"])
    body = {"name": "ledger", "transport": "http", "url": "http://127.0.0.1:9/mcp"}
    created = as_person(bastion, keeper, "POST", "/api/origins", json=body)
    assert created.status_code == 201 and created.json()["status"] == "pending", created.text
    origin_id = created.json()["id"]
    theirs = {"mode": "jwt", "lifetime_seconds": 300}
    assert as_person(bastion, keeper, "PUT", f"/api/origins/{origin_id}/auth", json=theirs).status_code == 200
    bastion.ok("POST", f"/api/origins/{origin_id}/review", json={"decision": "approve"})
    swapped = as_person(bastion, keeper, "PUT", f"/api/origins/{origin_id}/auth", json=theirs)
    assert swapped.status_code == 403 and "connectors:approve" in swapped.json()["error"]["message"]
    assert bastion.api("PUT", f"/api/origins/{origin_id}/auth", json={"mode": "none"}).status_code == 200
