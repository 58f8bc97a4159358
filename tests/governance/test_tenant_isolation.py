"""Cross-tenant reads and writes through every admin route and the MCP endpoint find nothing.

Two tenants share one Bastion. An administrator of tenant `acme` knows the ids
and names of everything in the default tenant and tries every route on them:
each answers as if the object did not exist, lists show none of it, and
afterwards the default tenant's objects are unchanged. The same holds the
other way round on the MCP endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.governance.people import add_person, as_person, call, mcp
from tests.harness import STDIO_INVENTORY, Bastion, run_bastion


class World:
    def __init__(self, bastion: Bastion) -> None:
        self.bastion = bastion
        b = bastion
        # The default tenant: an origin, a published server, a team, a custom role, a user,
        # tokens and a service client.
        self.origin = b.add_origin("inventory", command=STDIO_INVENTORY)
        self.server = b.publish_server("demo", {"origin": "inventory"})
        self.team = b.ok("POST", "/api/teams", json={"name": "ops"})
        self.role = b.ok("POST", "/api/roles", json={"name": "reader", "permissions": ["tools:call@server:demo"]})
        self.member = add_person(b, "dora", ["member"], teams=["ops"])
        self.token = b.ok("POST", "/api/tokens", json={"name": "d", "servers": ["demo"], "user": "dora"})
        self.client = b.ok("POST", "/api/oauth/clients", json={"name": "svc", "servers": ["demo"]})
        # Tenant acme, with its own administrator who builds the same things there.
        b.ok("POST", "/api/tenants", json={"slug": "acme", "name": "Acme"})
        self.acme = add_person(b, "ada", ["tenant-admin"], tenant="acme")
        origin = self.as_acme(
            "POST", "/api/origins", json={"name": "inventory", "transport": "stdio", "command": STDIO_INVENTORY}
        )
        assert origin.status_code == 201, origin.text
        assert origin.json()["status"] == "pending"
        self.acme_origin = self.ok_acme(
            "POST", f"/api/origins/{origin.json()['id']}/review", json={"decision": "approve"}
        )
        acme_server = self.ok_acme("POST", "/api/servers", json={"slug": "acme-demo"})
        self.ok_acme("POST", f"/api/servers/{acme_server['id']}/compose", json={"origin": "inventory"})
        self.acme_server = self.ok_acme("POST", f"/api/servers/{acme_server['id']}/publish")
        self.acme_token = self.ok_acme("POST", "/api/tokens", json={"name": "a", "servers": ["acme-demo"]})["token"]

    def as_acme(self, method: str, path: str, **kwargs: Any) -> Any:
        return as_person(self.bastion, self.acme, method, path, **kwargs)

    def ok_acme(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.as_acme(method, path, **kwargs)
        assert response.status_code < 300, (response.status_code, response.text)
        return response.json() if response.content else None


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with run_bastion(Path(tmp_path_factory.mktemp("tenants"))) as bastion:
        yield World(bastion)


def _attempts(w: World) -> dict[str, tuple[str, str, Any]]:
    """Every admin route aimed at the default tenant's objects, from acme."""
    o, s, item = w.origin["id"], w.server["id"], w.server["items"][0]["id"]
    return {
        "show origin": ("GET", f"/api/origins/{o}", None),
        "review origin": ("POST", f"/api/origins/{o}/review", {"decision": "reject"}),
        "refresh origin": ("POST", f"/api/origins/{o}/refresh", None),
        "delete origin": ("DELETE", f"/api/origins/{o}", None),
        "show server": ("GET", f"/api/servers/{s}", None),
        "show server by slug": ("GET", "/api/servers/demo", None),
        "compose their server": ("POST", f"/api/servers/{s}/compose", {"origin": "inventory"}),
        "compose their origin": ("POST", f"/api/servers/{w.acme_server['id']}/compose", {"origin": o}),
        "patch item": ("PATCH", f"/api/servers/{s}/items/{item}", {"enabled": False}),
        "unpublish": ("POST", f"/api/servers/{s}/unpublish", None),
        "publish": ("POST", f"/api/servers/{s}/publish", None),
        "delete server": ("DELETE", f"/api/servers/{s}", None),
        "token for their server": ("POST", "/api/tokens", {"name": "x", "servers": ["demo"]}),
        "token for their user": ("POST", "/api/tokens", {"name": "x", "user": "dora"}),
        "revoke their token": ("POST", f"/api/tokens/{w.token['id']}/revoke", None),
        "update their user": ("PATCH", f"/api/users/{w.member.id}", {"roles": ["tenant-admin"]}),
        "unlock their user": ("POST", f"/api/users/{w.member.id}/unlock", None),
        "team with their user": ("POST", "/api/teams", {"name": "t", "members": [w.member.id]}),
        "their team's members": ("PUT", f"/api/teams/{w.team['id']}/members", {"members": []}),
        "delete their team": ("DELETE", f"/api/teams/{w.team['id']}", None),
        "user in their team": (
            "POST",
            "/api/users",
            {"username": "eve", "password": "correct horse battery staple", "teams": ["ops"]},
        ),
        "user with their role": (
            "POST",
            "/api/users",
            {"username": "eve2", "password": "correct horse battery staple", "roles": ["reader"]},
        ),
        "delete their role": ("DELETE", "/api/roles/reader", None),
        "origin in their team": (
            "POST",
            "/api/origins",
            {
                "name": "x",
                "transport": "stdio",
                "command": STDIO_INVENTORY,
                "visibility": "team",
                "team_ids": [w.team["id"]],
            },
        ),
        "delete their client": ("DELETE", f"/api/oauth/clients/{w.client['client_id']}", None),
        "client for their server": ("POST", "/api/oauth/clients", {"name": "x", "servers": ["demo"]}),
        "client owned by their user": (
            "POST",
            "/api/oauth/clients",
            {"name": "x", "servers": ["acme-demo"], "owner": "dora"},
        ),
        "act in their tenant": ("GET", "/api/origins", None),
    }


def test_every_route_aimed_at_another_tenant_finds_nothing(world: World) -> None:
    for name, (method, path, body) in _attempts(world).items():
        headers = {"x-bastion-tenant": "default"} if name == "act in their tenant" else {}
        response = world.as_acme(method, path, json=body, headers=headers)
        # An unknown role is a bad request (the message names only what was asked for); the rest is absent.
        expected = {"act in their tenant": 403, "user with their role": 400}.get(name, 404)
        assert response.status_code == expected, (name, response.status_code, response.text)


def test_lists_show_nothing_of_another_tenant(world: World) -> None:
    theirs = {
        world.origin["id"],
        world.server["id"],
        world.team["id"],
        world.member.id,
        world.token["id"],
        world.client["client_id"],
        "dora",
        "demo",
        "reader",
        "ops",
    }
    for path in (
        "/api/origins",
        "/api/servers",
        "/api/tokens",
        "/api/users",
        "/api/teams",
        "/api/roles",
        "/api/oauth/clients",
        "/api/audit/logins",
        "/api/audit/token-uses",
    ):
        listing = world.ok_acme("GET", path)
        text = str(listing)
        leaked = sorted(value for value in theirs if f"'{value}'" in text)
        assert not leaked, (path, leaked)
    # ...while acme's own objects are there.
    assert [o["name"] for o in world.ok_acme("GET", "/api/origins")] == ["inventory"]
    assert [s["slug"] for s in world.ok_acme("GET", "/api/servers")] == ["acme-demo"]


def test_the_other_tenant_is_untouched_afterwards(world: World) -> None:
    test_every_route_aimed_at_another_tenant_finds_nothing(world)
    b = world.bastion
    assert b.ok("GET", f"/api/origins/{world.origin['id']}")["status"] == "approved"
    server = b.ok("GET", f"/api/servers/{world.server['id']}")
    assert server["published"] and all(item["enabled"] for item in server["items"])
    assert b.ok("GET", "/api/tokens")  # dora's token still listed, not revoked
    assert not next(t for t in b.ok("GET", "/api/tokens") if t["id"] == world.token["id"])["revoked_at"]
    users = {u["username"]: u for u in b.ok("GET", "/api/users")}
    assert users["dora"]["roles"] == ["member"] and users["dora"]["teams"] == [world.team["id"]]
    assert "eve" not in users and "eve2" not in users
    assert "reader" in {r["name"] for r in b.ok("GET", "/api/roles")}


def test_mcp_tokens_do_not_cross_tenants(world: World) -> None:
    b = world.bastion
    # Each tenant's token works on its own server...
    assert "result" in call(b, "demo", world.token["token"], "tools/list")
    assert "result" in call(b, "acme-demo", world.acme_token, "tools/list")
    # ...and another tenant's server does not exist for it, even by name.
    for slug, token in (("demo", world.acme_token), ("acme-demo", world.token["token"])):
        response = mcp(b, slug, token, "tools/list")
        assert response.status_code == 404, (slug, response.text)
        assert "no published virtual server" in response.json()["error"]["message"]


def test_platform_admins_act_in_a_named_tenant(world: World) -> None:
    b = world.bastion
    acme_origins = b.ok("GET", "/api/origins", headers={"x-bastion-tenant": "acme"})
    assert [o["id"] for o in acme_origins] == [world.acme_origin["id"]]
    assert b.api("GET", "/api/origins", headers={"x-bastion-tenant": "nowhere"}).status_code == 404
