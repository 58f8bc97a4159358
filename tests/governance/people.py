"""Governance test helpers: users with roles, their admin-API and MCP tokens, and raw MCP calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.harness import ADMIN_PASSWORD, Bastion

__all__ = ["Person", "add_person", "as_person", "call", "mcp"]

MODERN = "2026-07-28"
_NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    admin_token: str  # an admin-scoped token from /api/login: what their roles grant on /api
    tenant: str | None = None


def add_person(
    bastion: Bastion, name: str, roles: list[str], *, teams: list[str] | None = None, tenant: str | None = None
) -> Person:
    """A user created by the platform admin (in `tenant`, default: the default tenant), logged in."""
    headers = {"x-bastion-tenant": tenant} if tenant else {}
    body = {"username": name, "password": ADMIN_PASSWORD, "roles": roles, "teams": teams or []}
    user = bastion.ok("POST", "/api/users", json=body, headers=headers)
    login = bastion.http.post("/api/login", json={"username": name, "password": ADMIN_PASSWORD})
    assert login.status_code == 200, login.text
    return Person(id=user["id"], name=name, admin_token=login.json()["token"], tenant=tenant)


def as_person(bastion: Bastion, person: Person, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {person.admin_token}", **kwargs.pop("headers", {})}
    return bastion.http.request(method, path, headers=headers, **kwargs)


def mcp(
    bastion: Bastion, slug: str, token: str, method: str, *, extra_headers: dict[str, str] | None = None, **params: Any
) -> httpx.Response:
    """One stateless 2026-07-28 MCP request."""
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": method,
        **(extra_headers or {}),
    }
    if method in _NAME_PARAM:
        headers["mcp-name"] = str(params[_NAME_PARAM[method]])
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    return bastion.http.post(f"/servers/{slug}/mcp", json=body, headers=headers)


def call(bastion: Bastion, slug: str, token: str, method: str, **params: Any) -> dict[str, Any]:
    """The JSON-RPC reply (result or error) of one MCP request that got past authentication."""
    response = mcp(bastion, slug, token, method, **params)
    assert response.headers["content-type"].startswith("application/json"), (response.status_code, response.text)
    reply: dict[str, Any] = response.json()
    return reply
