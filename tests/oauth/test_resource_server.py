"""Bastion as an OAuth resource server: challenges, discovery metadata, audience, expiry, scope step-up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from sqlalchemy import update

from bastion.identity.tokens import hash_token
from bastion.store.models import OAuthToken as OAuthTokenRow
from bastion.store.tenancy import SYSTEM
from tests.harness import Bastion, run_bastion
from tests.oauth.flows import REDIRECT_URI, Flow, Tokens, bump_and_wait, mcp_request, own_database, publish_demo
from tests.oauth_browser import Redirect
from tests.oauth_storage import MemoryStorage

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("resource-server")) as bastion:
        publish_demo(bastion, "demo", "other")
        bastion.ok("POST", "/api/servers", json={"slug": "draft", "title": "Draft"})  # never published
        yield bastion


@pytest.fixture
async def flow(gw: Bastion) -> AsyncIterator[Flow]:
    async with Flow(gw) as person:
        yield person


def _metadata_url(gw: Bastion, slug: str) -> str:
    return f"{gw.base_url}/.well-known/oauth-protected-resource/servers/{slug}/mcp"


def _challenge(response: httpx.Response) -> str:
    return response.headers["www-authenticate"]


async def test_a_request_without_a_token_is_challenged_with_the_resource_metadata_url_and_no_error_code(
    gw: Bastion, flow: Flow
) -> None:
    response = await mcp_request(flow.http, gw.mcp_url("demo"), None)
    assert response.status_code == 401
    challenge = _challenge(response)
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{_metadata_url(gw, "demo")}"' in challenge
    assert "error=" not in challenge  # RFC 6750 §3.1: no error code when no credentials were sent
    assert "missing bearer token" in response.json()["error"]["message"]


async def test_an_unknown_token_is_401_invalid_token(gw: Bastion, flow: Flow) -> None:
    response = await mcp_request(flow.http, gw.mcp_url("demo"), "bst_at_made-up-token")
    assert response.status_code == 401
    assert 'error="invalid_token"' in _challenge(response)
    assert f'resource_metadata="{_metadata_url(gw, "demo")}"' in _challenge(response)
    assert "invalid, expired or revoked" in response.json()["error"]["message"]


def test_protected_resource_metadata_names_the_mcp_url_and_bastion_as_its_authorization_server(gw: Bastion) -> None:
    response = gw.http.get("/.well-known/oauth-protected-resource/servers/demo/mcp")
    assert response.status_code == 200
    document = response.json()
    assert document["resource"] == gw.mcp_url("demo")  # RFC 9728 §3.3: identical to the resource
    assert document["authorization_servers"] == [gw.base_url]
    assert document["bearer_methods_supported"] == ["header"]
    assert {"mcp", "mcp:read", "mcp:write"} <= set(document["scopes_supported"])


def test_resource_metadata_of_an_unpublished_server_is_the_same_404_as_of_an_unknown_one(gw: Bastion) -> None:
    draft = gw.http.get("/.well-known/oauth-protected-resource/servers/draft/mcp")
    unknown = gw.http.get("/.well-known/oauth-protected-resource/servers/no-such-server/mcp")
    assert draft.status_code == unknown.status_code == 404
    assert draft.content == unknown.content  # no hint that a draft exists
    assert b"draft" not in draft.content


@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"])
def test_authorization_server_metadata_advertises_s256_iss_and_client_metadata_documents(
    gw: Bastion, path: str
) -> None:
    response = gw.http.get(path)
    assert response.status_code == 200
    document = response.json()
    issuer = gw.base_url
    assert document["issuer"] == issuer
    assert document["authorization_endpoint"] == f"{issuer}/oauth/authorize"
    assert document["token_endpoint"] == f"{issuer}/oauth/token"
    assert document["registration_endpoint"] == f"{issuer}/oauth/register"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["authorization_response_iss_parameter_supported"] is True
    assert document["client_id_metadata_document_supported"] is True
    assert document["response_types_supported"] == ["code"]
    assert {"authorization_code", "refresh_token"} <= set(document["grant_types_supported"])


async def test_a_token_issued_for_one_server_is_refused_at_another_as_an_invalid_token(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens(slug="demo")
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)).status_code == 200
    response = await mcp_request(flow.http, gw.mcp_url("other"), tokens.access_token)
    # RFC 8707 / MCP authorization: a token whose audience is another resource is invalid here.
    assert response.status_code == 401, (response.status_code, response.headers.get("www-authenticate"))
    assert 'error="invalid_token"' in _challenge(response)
    assert f'resource_metadata="{_metadata_url(gw, "other")}"' in _challenge(response)


async def test_an_expired_access_token_is_refused_once_bastion_sees_the_change(gw: Bastion, flow: Flow) -> None:
    async with own_database(gw) as db:
        tokens = await flow.tokens()
        live = await flow.tokens(tokens.client_id)
        assert (await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)).status_code == 200
        async with db.session(SYSTEM) as session:
            await session.execute(
                update(OAuthTokenRow)
                .where(OAuthTokenRow.token_hash == hash_token(tokens.access_token))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        await bump_and_wait(gw, db)
        response = await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)
        still_live = await mcp_request(flow.http, gw.mcp_url("demo"), live.access_token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in _challenge(response)
    assert "invalid, expired or revoked" in response.json()["error"]["message"]
    assert still_live.status_code == 200  # the epoch bump alone revokes nothing


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Bastion]:
    """A second Bastion with its own database and keys: another issuer."""
    with run_bastion(tmp_path) as bastion:
        publish_demo(bastion, "demo")
        yield bastion


async def test_a_valid_token_of_another_bastion_is_refused(gw: Bastion, flow: Flow, elsewhere: Bastion) -> None:
    async with Flow(elsewhere) as foreign:
        tokens = await foreign.tokens()
        assert (await mcp_request(foreign.http, elsewhere.mcp_url("demo"), tokens.access_token)).status_code == 200
    response = await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in _challenge(response)


async def test_api_tokens_keep_working_beside_oauth(gw: Bastion, flow: Flow) -> None:
    token = gw.token("demo")
    response = await mcp_request(flow.http, gw.mcp_url("demo"), token, "tools/call", name="list_stock")
    assert response.status_code == 200, response.text
    assert response.json()["result"]["isError"] is False
    async with gw.client("demo", token) as client:
        assert not (await client.call_tool("create_reorder", {"sku": "WID-001", "quantity": 1})).is_error


async def test_a_read_only_grant_reads_but_a_write_tool_asks_for_mcp_write(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens(scope="mcp:read")
    assert tokens.scope == "mcp:read"
    url = gw.mcp_url("demo")
    listed = await mcp_request(flow.http, url, tokens.access_token, "tools/list")
    assert listed.status_code == 200
    assert "create_reorder" in {tool["name"] for tool in listed.json()["result"]["tools"]}
    read = await mcp_request(
        flow.http, url, tokens.access_token, "tools/call", name="get_order", arguments={"order_id": "ORD-1001"}
    )
    assert read.status_code == 200 and read.json()["result"]["isError"] is False
    write = await mcp_request(
        flow.http,
        url,
        tokens.access_token,
        "tools/call",
        name="create_reorder",
        arguments={"sku": "WID-001", "quantity": 1},
    )
    assert write.status_code == 403
    challenge = _challenge(write)
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="mcp:write"' in challenge
    assert f'resource_metadata="{_metadata_url(gw, "demo")}"' in challenge
    assert "mcp:write" in write.json()["error"]["message"]


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_the_sdk_client_steps_up_to_mcp_write_and_then_succeeds(gw: Bastion, flow: Flow, mode: str) -> None:
    read_only: Tokens = await flow.tokens(scope="mcp:read")
    registered = OAuthClientInformationFull(
        client_id=read_only.client_id,
        redirect_uris=[REDIRECT_URI],
        grant_types=["authorization_code", "refresh_token"],
        token_endpoint_auth_method="none",
    )
    storage = MemoryStorage(
        OAuthToken(access_token=read_only.access_token, refresh_token=read_only.refresh_token, scope="mcp:read"),
        registered,
    )
    asked: list[str] = []
    redirects: list[Redirect] = []

    async def person_opens(url: str) -> None:
        asked.append(url)
        redirects.append(await flow.authorize(url.removeprefix(gw.base_url)))

    async def callback() -> AuthorizationCodeResult:
        params = redirects[-1].params
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

    provider = OAuthClientProvider(
        server_url=gw.mcp_url("demo"),
        client_metadata=OAuthClientMetadata(
            client_name="Flow test client",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=person_opens,
        callback_handler=callback,
    )
    http = create_mcp_http_client(auth=provider)
    async with (
        http,
        Client(streamable_http_client(gw.mcp_url("demo"), http_client=http), mode=mode, cache=None) as client,
    ):
        assert not (await client.call_tool("get_order", {"order_id": "ORD-1001"})).is_error
        assert asked == []  # the read-only token was enough so far
        result = await client.call_tool("create_reorder", {"sku": "WID-001", "quantity": 2})
        assert not result.is_error, result
        assert not (await client.call_tool("list_stock", {})).is_error
    assert len(asked) == 1
    scope = httpx.URL(asked[0]).params["scope"].split()
    assert {"mcp:read", "mcp:write"} <= set(scope)  # SEP-2350: the union, not only the new scope
    assert storage.tokens is not None and storage.tokens.access_token != read_only.access_token
    assert storage.tokens.scope is not None and "mcp:write" in storage.tokens.scope.split()
