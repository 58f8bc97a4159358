"""Each built-in role against each control-plane route and each data-plane method.

The expected tables below are the specification: a role either may use a route
(the request reaches the handler: 2xx, or 404/409/422 for the deliberately
harmless requests used here) or is refused with 403 before the handler runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.governance.people import Person, add_person, as_person, call
from tests.harness import STDIO_INVENTORY, Bastion, run_bastion

ROLES = ("platform-admin", "tenant-admin", "connector-admin", "publisher", "member", "auditor")
P, T, C, U, M, A = ROLES  # short names for the tables

# (method, path, body): harmless whoever runs them — unknown ids (404) or invalid bodies (422).
ROUTES: dict[str, tuple[str, str, Any]] = {
    "origins.create": ("POST", "/api/origins", {}),
    "origins.list": ("GET", "/api/origins", None),
    "origins.show": ("GET", "/api/origins/nope", None),
    "origins.review": ("POST", "/api/origins/nope/review", {"decision": "approve"}),
    "origins.refresh": ("POST", "/api/origins/nope/refresh", None),
    "origins.auth": ("PUT", "/api/origins/nope/auth", {"mode": "none"}),
    "origins.delete": ("DELETE", "/api/origins/nope", None),
    "origins.approve_item": ("POST", "/api/origins/nope/items/approve", {"kind": "tool", "name": "x"}),
    "policies.list": ("GET", "/api/policies", None),
    "policies.stages": ("GET", "/api/policies/stages", None),
    "policies.put": ("PUT", "/api/policies/nope", {}),
    "policies.delete": ("DELETE", "/api/policies/nope", None),
    "servers.create": ("POST", "/api/servers", {}),
    "servers.list": ("GET", "/api/servers", None),
    "servers.show": ("GET", "/api/servers/nope", None),
    "servers.compose": ("POST", "/api/servers/nope/compose", {"origin": "nope"}),
    "servers.patch_item": ("PATCH", "/api/servers/nope/items/nope", {"enabled": False}),
    "servers.publish": ("POST", "/api/servers/nope/publish", None),
    "servers.unpublish": ("POST", "/api/servers/nope/unpublish", None),
    "servers.delete": ("DELETE", "/api/servers/nope", None),
    "tokens.create": ("POST", "/api/tokens", {}),
    "tokens.list": ("GET", "/api/tokens", None),
    "tokens.revoke": ("POST", "/api/tokens/nope/revoke", None),
    "users.create": ("POST", "/api/users", {}),
    "users.list": ("GET", "/api/users", None),
    "users.update": ("PATCH", "/api/users/nope", {"roles": ["member"]}),
    "users.unlock": ("POST", "/api/users/nope/unlock", None),
    "teams.create": ("POST", "/api/teams", {}),
    "teams.list": ("GET", "/api/teams", None),
    "teams.members": ("PUT", "/api/teams/nope/members", {"members": []}),
    "teams.delete": ("DELETE", "/api/teams/nope", None),
    "roles.list": ("GET", "/api/roles", None),
    "roles.create": ("POST", "/api/roles", {}),
    "roles.delete": ("DELETE", "/api/roles/nope", None),
    "permissions.list": ("GET", "/api/permissions", None),
    "clients.create": ("POST", "/api/oauth/clients", {}),
    "clients.list": ("GET", "/api/oauth/clients", None),
    "clients.registered": ("GET", "/api/oauth/clients/registered", None),
    "clients.delete": ("DELETE", "/api/oauth/clients/nope", None),
    "audit.logins": ("GET", "/api/audit/logins", None),
    "audit.token_uses": ("GET", "/api/audit/token-uses", None),
    "audit.records": ("GET", "/api/audit/records", None),
    "audit.export": ("GET", "/api/audit/export", None),
    "tenants.create": ("POST", "/api/tenants", {}),
    "tenants.list": ("GET", "/api/tenants", None),
}

# Which roles may use each route; every other role gets 403.
CONTROL_ALLOWED: dict[str, set[str]] = {
    "origins.create": {P, T, C},
    "origins.list": {P, T, C, U, A},
    "origins.show": {P, T, C, U, A},
    "origins.review": {P, T, C},
    "origins.refresh": {P, T, C},
    "origins.auth": {P, T, C},
    "origins.delete": {P, T, C},
    "origins.approve_item": {P, T, C},
    "policies.list": {P, T, A},
    "policies.stages": {P, T, A},
    "policies.put": {P, T},
    "policies.delete": {P, T},
    "servers.create": {P, T, U},
    "servers.list": {P, T, C, U, A},
    "servers.show": {P, T, C, U, A},
    "servers.compose": {P, T, U},
    "servers.patch_item": {P, T, U},
    "servers.publish": {P, T, U},
    "servers.unpublish": {P, T, U},
    "servers.delete": {P, T, U},
    "tokens.create": {P, T, C, U, M},
    "tokens.list": {P, T, C, U, M},
    "tokens.revoke": {P, T, C, U, M},
    "users.create": {P, T},
    "users.list": {P, T, A},
    "users.update": {P, T},
    "users.unlock": {P, T},
    "teams.create": {P, T},
    "teams.list": {P, T, A},
    "teams.members": {P, T},
    "teams.delete": {P, T},
    "roles.list": {P, T, A},
    "roles.create": {P, T},
    "roles.delete": {P, T},
    "permissions.list": {P, T, A},
    "clients.create": {P, T},
    "clients.list": {P, T},
    "clients.registered": {P},
    "clients.delete": {P, T},
    "audit.logins": {P, T, A},
    "audit.token_uses": {P, T, A},
    "audit.records": {P, T, A},
    "audit.export": {P, T, A},
    "tenants.create": {P},
    "tenants.list": {P},
}

# Data plane on the demo server (tenant-wide visibility): may the role list/use each item?
DATA_ALLOWED: dict[str, set[str]] = {
    "tools/call list_stock": {P, T, M},
    "tools/call refund_order": {P, T, M},
    "resources/read": {P, T, M},
    "prompts/get": {P, T, M},
}
DATA_REQUESTS: dict[str, dict[str, Any]] = {
    "tools/call list_stock": {"method": "tools/call", "name": "list_stock", "arguments": {}},
    "tools/call refund_order": {
        "method": "tools/call",
        "name": "refund_order",
        "arguments": {"order_id": "SO-1001", "amount": 1.0},
    },
    "resources/read": {"method": "resources/read", "uri": "inventory://warehouses"},
    "prompts/get": {"method": "prompts/get", "name": "reorder_advice", "arguments": {"sku": "WIDGET-1"}},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bastion, dict[str, Person], dict[str, str]]]:
    with run_bastion(Path(tmp_path_factory.mktemp("matrix"))) as bastion:
        bastion.add_origin("inventory", command=STDIO_INVENTORY)
        bastion.publish_server("demo", {"origin": "inventory"})
        # These tables are about roles: a destructive tool's human approval has its own tests.
        never = {"settings": {"mode": "never"}}
        bastion.ok("PUT", "/api/policies/approval", params={"scope": "server:demo"}, json=never)
        people = {role: add_person(bastion, f"user-{role}", [role]) for role in ROLES}
        mcp_tokens = {
            role: bastion.ok("POST", "/api/tokens", json={"name": "mcp", "servers": ["demo"], "user": person.name})[
                "token"
            ]
            for role, person in people.items()
        }
        yield bastion, people, mcp_tokens


def test_the_tables_cover_every_admin_route(world: tuple[Bastion, dict[str, Person], dict[str, str]]) -> None:
    """A new route must join the tables: the served OpenAPI document lists every admin route."""
    bastion, _, _ = world
    document = bastion.ok("GET", "/api/openapi.json")
    served = {
        (method.upper(), re.sub(r"\{[^}]+\}", "nope", path))
        for path, operations in document["paths"].items()
        if path.startswith("/api/")
        for method in operations
    }
    assert set(ROUTES) == set(CONTROL_ALLOWED)
    assert served - {("POST", "/api/login")} == {(method, path) for method, path, _ in ROUTES.values()}


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("role", ROLES)
def test_control_plane(world: tuple[Bastion, dict[str, Person], dict[str, str]], role: str, route: str) -> None:
    bastion, people, _ = world
    method, path, body = ROUTES[route]
    response = as_person(bastion, people[role], method, path, json=body)
    if role in CONTROL_ALLOWED[route]:
        assert response.status_code in (200, 201, 404, 409, 422), (role, route, response.status_code, response.text)
    else:
        assert response.status_code == 403, (role, route, response.status_code, response.text)
        assert "permission" in response.json()["error"]["message"]


@pytest.mark.parametrize("request_name", sorted(DATA_REQUESTS))
@pytest.mark.parametrize("role", ROLES)
def test_data_plane(world: tuple[Bastion, dict[str, Person], dict[str, str]], role: str, request_name: str) -> None:
    bastion, _, tokens = world
    params = dict(DATA_REQUESTS[request_name])
    reply = call(bastion, "demo", tokens[role], params.pop("method"), **params)
    if role in DATA_ALLOWED[request_name]:
        assert "result" in reply, (role, request_name, reply)
    else:
        assert reply.get("error"), (role, request_name, reply)
        assert "roles do not allow" in reply["error"]["message"]


@pytest.mark.parametrize("role", ROLES)
def test_lists_show_only_what_the_role_may_use(
    world: tuple[Bastion, dict[str, Person], dict[str, str]], role: str
) -> None:
    bastion, _, tokens = world
    tools = {t["name"] for t in call(bastion, "demo", tokens[role], "tools/list")["result"]["tools"]}
    prompts = {p["name"] for p in call(bastion, "demo", tokens[role], "prompts/list")["result"]["prompts"]}
    if role in (P, T, M):
        assert {"list_stock", "get_order", "create_reorder", "refund_order"} <= tools
        assert prompts == {"reorder_advice"}
    else:
        assert tools == set() and prompts == set()
