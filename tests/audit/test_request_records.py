"""Every inbound request has its audit record, not only the calls that reach an origin: MCP requests
refused before dispatch, admin API requests, OAuth and sign-in requests, each with who, what, the
decision and why, under the request's correlation id."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.governance.people import add_person, as_person
from tests.harness import ADMIN_PASSWORD, Bastion, eventually, inventory_gateway

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with inventory_gateway(tmp_path_factory.mktemp("requests")) as bastion:
        yield bastion


async def _records(gw: Bastion, correlation_id: str, count: int = 1) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def stored() -> bool:
        found[:] = gw.ok("GET", f"/api/audit/records?correlation_id={correlation_id}")
        return len(found) >= count

    await eventually(stored)
    return found


def _rid() -> str:
    return secrets.token_hex(12)


async def test_an_mcp_request_refused_before_dispatch_is_recorded_with_its_reason(gw: Bastion) -> None:
    rid = _rid()
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    refused = gw.http.post(
        "/servers/demo/mcp", json=body, headers={"authorization": "Bearer not-a-token", "x-request-id": rid}
    )
    assert refused.status_code == 401
    (record,) = await _records(gw, rid)
    assert record["kind"] == "mcp.request" and record["decision"] == "deny" and record["server"] == "demo"
    assert record["principal"] == "" and record["method"] == "HTTP POST" and record["reason"]
    assert "not-a-token" not in json.dumps(record)  # the presented token is never kept


async def test_headers_that_contradict_the_body_are_recorded_for_the_caller(gw: Bastion) -> None:
    token, rid = gw.token("demo"), _rid()
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_order", "_meta": meta}}
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": "refund_order",  # not the tool the body names
        "x-request-id": rid,
    }
    answered = gw.http.post("/servers/demo/mcp", json=body, headers=headers)
    assert answered.status_code == 400 and "error" in answered.json()
    (record,) = await _records(gw, rid)
    assert record["decision"] == "error" and record["method"] == "tools/call" and record["principal"]
    assert record["status"] == str(answered.json()["error"]["code"])


async def test_admin_api_requests_are_recorded_allowed_and_refused(gw: Bastion) -> None:
    rid = _rid()
    created = gw.api("POST", "/api/servers", json={"slug": "audited", "title": "t"}, headers={"x-request-id": rid})
    assert created.status_code == 201, created.text
    (record,) = await _records(gw, rid)
    admin = gw.ok("GET", "/api/users")[0]
    assert record["kind"] == "api.request" and record["method"] == "POST /api/servers"
    assert record["decision"] == "allow" and record["status"] == "201" and record["principal"] == admin["id"]
    assert record["client"].startswith("api-token:")

    # A member without servers:manage is refused: the record names them and the missing permission.
    rita = add_person(gw, "rita", roles=["member"])
    rid = _rid()
    refused = as_person(
        gw, rita, "POST", "/api/servers", json={"slug": "nope", "title": "t"}, headers={"x-request-id": rid}
    )
    assert refused.status_code == 403
    (record,) = await _records(gw, rid)
    assert record["decision"] == "deny" and record["status"] == "403" and "servers:manage" in record["reason"]
    assert record["principal"] == rita.id

    # No token at all: recorded too (in the default tenant), with the reason.
    rid = _rid()
    assert gw.http.get("/api/origins", headers={"x-request-id": rid}).status_code == 401
    (record,) = await _records(gw, rid)
    assert record["decision"] == "deny" and record["principal"] == "" and record["method"] == "GET /api/origins"

    # Validation errors name the fields, not their values.
    rid = _rid()
    invalid = gw.api("POST", "/api/servers", json={"slug": "Not A Slug!", "title": "t"}, headers={"x-request-id": rid})
    assert invalid.status_code == 422
    (record,) = await _records(gw, rid)
    assert record["decision"] == "error" and "slug" in record["reason"] and "Not A Slug" not in record["reason"]


async def test_oauth_and_sign_in_requests_are_recorded_without_secrets(gw: Bastion) -> None:
    rid = _rid()
    refused = gw.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "no-such-client", "client_secret": "s3cr3t-value"},
        headers={"x-request-id": rid},
    )
    assert refused.status_code == 401
    (record,) = await _records(gw, rid)
    assert record["kind"] == "oauth.request" and record["method"] == "POST /oauth/token"
    assert record["decision"] == "deny" and record["target"] == "client_credentials"
    assert record["client"] == "no-such-client" and "s3cr3t-value" not in json.dumps(record)

    rid = _rid()
    failed = gw.http.post(
        "/auth/session", json={"username": "admin", "password": "wrong-password-123"}, headers={"x-request-id": rid}
    )
    assert failed.status_code == 401
    (record,) = await _records(gw, rid)
    assert record["decision"] == "deny" and record["target"] == "admin" and record["principal"] == ""
    assert "wrong-password-123" not in json.dumps(record)

    # Public metadata is not an act: not recorded.
    rid = _rid()
    assert gw.http.get("/.well-known/oauth-authorization-server", headers={"x-request-id": rid}).status_code == 200
    await _records(gw, rid, count=0)
    assert gw.ok("GET", f"/api/audit/records?correlation_id={rid}") == []


async def test_a_client_that_leaves_before_its_body_ends_is_recorded_not_a_server_error(gw: Bastion) -> None:
    """Content-Length 100, ten bytes, then the connection closes: nobody is left to answer, and the
    request is recorded as refused (it was an unhandled exception, a 500 in the metrics, before)."""
    token, rid = gw.token("demo"), _rid()
    port = int(gw.base_url.rsplit(":", 1)[1])
    head = (
        "POST /servers/demo/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nX-Request-ID: {rid}\r\nContent-Length: 100\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(head.encode() + b'{"jsonrpc"')
        raw.shutdown(socket.SHUT_WR)
        assert raw.recv(1024) == b""  # closed without an answer: the client had gone
    (record,) = await _records(gw, rid)
    assert record["decision"] == "error" and record["status"] == "-32600"
    assert "closed the connection after 10 bytes" in record["reason"]
    assert 'status="500"' not in gw.api("GET", "/metrics").text


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with inventory_gateway(tmp_path_factory.mktemp("budget"), rate_limit_request_refusals="3/minute") as bastion:
        yield bastion


async def test_refusals_of_unidentified_requests_are_recorded_within_a_budget_per_address(budgeted: Bastion) -> None:
    """Anyone who reaches the API could otherwise grow the trail (and its journal on disk) at the rate
    they send requests. Past the budget they are answered as before; a caller who was identified is
    recorded whatever the budget, as is whatever changes something."""
    ids = [_rid() for _ in range(5)]
    for rid in ids:
        assert budgeted.http.get("/api/origins", headers={"x-request-id": rid}).status_code == 401
    rita = add_person(budgeted, "rita", roles=["member"])
    identified = _rid()
    refused = as_person(budgeted, rita, "GET", "/api/users", headers={"x-request-id": identified})
    assert refused.status_code == 403
    (record,) = await _records(budgeted, identified)
    assert record["principal"] == rita.id
    kept = [rid for rid in ids if budgeted.ok("GET", f"/api/audit/records?correlation_id={rid}")]
    assert kept == ids[:3]


async def test_a_signed_in_persons_requests_on_the_identity_plane_are_recorded_as_theirs(gw: Bastion) -> None:
    """Withdrawing a consent, disconnecting, signing out: what a person does with their session is
    recorded for them, in their tenant's trail (it was for nobody, in the default tenant)."""
    sam = add_person(gw, "sam", roles=["member"])
    listed, signed_out = _rid(), _rid()
    async with httpx.AsyncClient(base_url=gw.base_url) as browser:
        signed_in = await browser.post("/auth/session", json={"username": "sam", "password": ADMIN_PASSWORD})
        assert signed_in.status_code == 200
        assert (await browser.get("/auth/consents", headers={"x-request-id": listed})).status_code == 200
        assert (await browser.delete("/auth/session", headers={"x-request-id": signed_out})).status_code == 204
    for rid in (listed, signed_out):
        (record,) = await _records(gw, rid)
        assert record["principal"] == sam.id, record
