"""Service clients and the client_credentials grant (RFC 6749 §4.4, MCP "OAuth Client Credentials").

One Bastion serves the module: "demo" and "other" publish the same inventory origin, and each
test creates its own service client, so no test depends on another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.governance.people import add_person, as_person
from tests.harness import Bastion, run_bastion
from tests.oauth.flows import mcp_request, publish_demo
from tests.oauth_storage import MemoryStorage

pytestmark = pytest.mark.anyio

CC = "client_credentials"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    overrides = {"argon2_time_cost": 1, "argon2_memory_kib": 8192, "rate_limit_token": "10000/minute"}
    with run_bastion(tmp_path_factory.mktemp("client-credentials"), **overrides) as bastion:
        publish_demo(bastion, "demo", "other")
        yield bastion


@pytest.fixture
async def http(gw: Bastion) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.base_url, timeout=30) as client:
        yield client


def service_client(gw: Bastion, *servers: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "nightly report", "servers": list(servers), **fields}
    created: dict[str, Any] = gw.ok("POST", "/api/oauth/clients", json=body)
    return created


async def token_request(http: httpx.AsyncClient, client: dict[str, Any], **form: str) -> httpx.Response:
    auth = (client["client_id"], client["client_secret"])
    return await http.post("/oauth/token", data={"grant_type": CC, **form}, auth=auth)


def test_an_admin_creates_a_service_client_whose_secret_is_shown_only_once(gw: Bastion) -> None:
    created = service_client(gw, "demo", scopes=["mcp:read"])
    assert created["kind"] == "service" and created["client_secret"].startswith("bst_cs_")
    assert created["grant_types"] == [CC] and created["scope"] == "mcp:read"
    assert created["token_endpoint_auth_method"] == "client_secret_basic"
    listed = next(c for c in gw.ok("GET", "/api/oauth/clients") if c["client_id"] == created["client_id"])
    assert "client_secret" not in listed and "secret_hash" not in listed
    assert created["client_secret"] not in gw.api("GET", "/api/oauth/clients").text
    assert listed["server_ids"] == created["server_ids"] and len(listed["server_ids"]) == 1


def test_a_service_client_acts_for_a_named_owner_or_else_for_the_admin_who_made_it(gw: Bastion) -> None:
    owner = gw.ok("POST", "/api/users", json={"username": "report-bot", "password": "a long passphrase 77"})
    named = service_client(gw, "demo", owner="report-bot")
    assert named["owner_user_id"] == owner["id"]
    admin = next(user for user in gw.ok("GET", "/api/users") if user["username"] == "admin")
    assert service_client(gw, "demo")["owner_user_id"] == admin["id"]
    missing = gw.api("POST", "/api/oauth/clients", json={"name": "x", "servers": ["demo"], "owner": "nobody"})
    assert missing.status_code == 404 and "nobody" in missing.json()["error"]["message"]


def test_naming_another_owner_needs_tokens_manage_as_for_an_api_token(gw: Bastion) -> None:
    """A client's tokens act as its owner: clients:manage alone may not make one for someone else."""
    gw.ok("POST", "/api/roles", json={"name": "client-keeper", "permissions": ["clients:manage"]})
    keeper = add_person(gw, "keeper", roles=["client-keeper"])
    gw.ok("POST", "/api/users", json={"username": "victim", "password": "a long passphrase 78"})
    body = {"name": "x", "servers": ["demo"], "owner": "victim"}
    refused = as_person(gw, keeper, "POST", "/api/oauth/clients", json=body)
    assert refused.status_code == 403 and "tokens:manage" in refused.json()["error"]["message"]
    own = as_person(gw, keeper, "POST", "/api/oauth/clients", json={"name": "mine", "servers": ["demo"]})
    assert own.status_code == 201 and own.json()["owner_user_id"] == keeper.id
    assert not [c for c in gw.ok("GET", "/api/oauth/clients") if c["client_name"] == "x"]


def test_the_client_admin_api_needs_an_admin_token_and_valid_fields(gw: Bastion) -> None:
    assert gw.http.get("/api/oauth/clients").status_code == 401
    assert gw.http.post("/api/oauth/clients", json={"name": "x", "servers": ["demo"]}).status_code == 401
    no_servers = gw.api("POST", "/api/oauth/clients", json={"name": "x", "servers": []})
    assert no_servers.status_code == 422
    bad_grant = gw.api(
        "POST", "/api/oauth/clients", json={"name": "x", "servers": ["demo"], "grant_types": ["implicit"]}
    )
    assert bad_grant.status_code == 422
    unknown_server = gw.api("POST", "/api/oauth/clients", json={"name": "x", "servers": ["nowhere"]})
    assert unknown_server.status_code == 404


async def test_the_sdk_client_credentials_provider_gets_a_token_and_calls_tools(gw: Bastion) -> None:
    client = service_client(gw, "demo")
    storage = MemoryStorage()
    provider = ClientCredentialsOAuthProvider(
        server_url=gw.mcp_url("demo"),
        storage=storage,
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        issuer=gw.base_url,
    )
    async with (
        create_mcp_http_client(auth=provider) as http,
        Client(streamable_http_client(gw.mcp_url("demo"), http_client=http), mode="2026-07-28", cache=None) as mcp,
    ):
        result = await mcp.call_tool("get_order", {"order_id": "ORD-1001"})
        assert not result.is_error
    assert storage.tokens is not None and storage.tokens.refresh_token is None  # RFC 6749 §4.4.3


async def test_a_token_for_one_server_is_refused_at_another(gw: Bastion, http: httpx.AsyncClient) -> None:
    client = service_client(gw, "demo", "other")
    response = await token_request(http, client, resource=gw.mcp_url("demo"))
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert (await mcp_request(http, gw.mcp_url("demo"), token)).status_code == 200
    elsewhere = await mcp_request(http, gw.mcp_url("other"), token)
    # Refused either way; which status an audience mismatch gets (403 today, 401 invalid_token per
    # RFC 6750 §3.1) is the data plane's decision, tested in test_resource_server.
    assert elsewhere.status_code == 401


async def test_the_token_response_has_no_refresh_token_and_is_not_cached(gw: Bastion, http: httpx.AsyncClient) -> None:
    client = service_client(gw, "demo")
    response = await token_request(http, client, resource=gw.mcp_url("demo"))
    body = response.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "mcp" and body["expires_in"] == 600
    assert "refresh_token" not in body
    assert response.headers["cache-control"] == "no-store"


async def test_resource_is_required(gw: Bastion, http: httpx.AsyncClient) -> None:
    response = await token_request(http, service_client(gw, "demo"))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
    assert "resource parameter is required" in response.json()["error_description"]


async def test_a_resource_outside_the_clients_servers_is_an_invalid_target(
    gw: Bastion, http: httpx.AsyncClient
) -> None:
    response = await token_request(http, service_client(gw, "demo"), resource=gw.mcp_url("other"))
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_target",
        "error_description": f"this client is not allowed to reach {gw.mcp_url('other')}",
    }


async def test_requested_scopes_are_narrowed_to_what_the_client_holds(gw: Bastion, http: httpx.AsyncClient) -> None:
    client = service_client(gw, "demo", scopes=["mcp:read"])
    resource = gw.mcp_url("demo")
    assert (await token_request(http, client, resource=resource)).json()["scope"] == "mcp:read"
    # Asking for the broader `mcp` yields the part of it the client holds.
    assert (await token_request(http, client, resource=resource, scope="mcp")).json()["scope"] == "mcp:read"
    refused = await token_request(http, client, resource=resource, scope="mcp:write")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    assert "holds mcp:read" in refused.json()["error_description"]
    unknown = await token_request(http, client, resource=resource, scope="admin")
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_scope"


async def test_a_wrong_secret_is_invalid_client(gw: Bastion, http: httpx.AsyncClient) -> None:
    client = service_client(gw, "demo")
    response = await token_request(http, {**client, "client_secret": "bst_cs_wrong"}, resource=gw.mcp_url("demo"))
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client", "error_description": "client authentication failed"}
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_a_secret_in_the_body_works_for_client_secret_post(gw: Bastion, http: httpx.AsyncClient) -> None:
    client = service_client(gw, "demo", token_endpoint_auth_method="client_secret_post")
    form = {
        "grant_type": CC,
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
        "resource": gw.mcp_url("demo"),
    }
    assert (await http.post("/oauth/token", data=form)).status_code == 200


async def test_public_clients_may_not_use_the_grant(gw: Bastion, http: httpx.AsyncClient) -> None:
    registered = await http.post(
        "/oauth/register",
        json={"redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"},
    )
    form = {"grant_type": CC, "client_id": registered.json()["client_id"], "resource": gw.mcp_url("demo")}
    response = await http.post("/oauth/token", data=form)
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


async def test_a_client_without_the_grant_is_an_unauthorized_client(gw: Bastion, http: httpx.AsyncClient) -> None:
    exchanger = service_client(gw, "demo", grant_types=["urn:ietf:params:oauth:grant-type:token-exchange"])
    response = await token_request(http, exchanger, resource=gw.mcp_url("demo"))
    assert response.status_code == 400
    assert response.json() == {
        "error": "unauthorized_client",
        "error_description": "this client is not registered for the client_credentials grant",
    }


async def test_deleting_a_client_revokes_its_tokens_at_once(gw: Bastion, http: httpx.AsyncClient) -> None:
    client = service_client(gw, "demo")
    token = (await token_request(http, client, resource=gw.mcp_url("demo"))).json()["access_token"]
    assert (await mcp_request(http, gw.mcp_url("demo"), token)).status_code == 200
    assert gw.api("DELETE", f"/api/oauth/clients/{client['client_id']}").status_code == 204
    assert (await mcp_request(http, gw.mcp_url("demo"), token)).status_code == 401
    again = await token_request(http, client, resource=gw.mcp_url("demo"))
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"
    assert client["client_id"] not in {c["client_id"] for c in gw.ok("GET", "/api/oauth/clients")}
    assert gw.api("DELETE", f"/api/oauth/clients/{client['client_id']}").status_code == 404


def test_metadata_advertises_the_grants_and_the_revocation_and_introspection_endpoints(gw: Bastion) -> None:
    document = gw.http.get("/.well-known/oauth-authorization-server").json()
    assert {
        CC,
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    } <= set(document["grant_types_supported"])
    assert "client_secret_basic" in document["token_endpoint_auth_methods_supported"]  # the extension's MUST
    assert document["revocation_endpoint"] == f"{gw.base_url}/oauth/revoke"
    assert document["introspection_endpoint"] == f"{gw.base_url}/oauth/introspect"


def test_platform_admins_see_and_delete_the_clients_applications_registered(gw: Bastion) -> None:
    body = {
        "client_name": "Desktop agent",
        "redirect_uris": ["http://127.0.0.1:4000/cb"],
        "token_endpoint_auth_method": "none",
    }
    client_id = gw.http.post("/oauth/register", json=body).json()["client_id"]
    registered = gw.ok("GET", "/api/oauth/clients/registered")
    assert [c["kind"] for c in registered if c["client_id"] == client_id] == ["dynamic"]
    assert client_id not in {c["client_id"] for c in gw.ok("GET", "/api/oauth/clients")}  # no tenant's
    tina = add_person(gw, "tina", roles=["tenant-admin"])
    refused = as_person(gw, tina, "GET", "/api/oauth/clients/registered")
    assert refused.status_code == 403 and "tenants:manage" in refused.json()["error"]["message"]
    assert as_person(gw, tina, "DELETE", f"/api/oauth/clients/{client_id}").status_code == 404
    assert gw.api("DELETE", f"/api/oauth/clients/{client_id}").status_code == 204
    assert client_id not in {c["client_id"] for c in gw.ok("GET", "/api/oauth/clients/registered")}
