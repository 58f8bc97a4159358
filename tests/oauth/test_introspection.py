"""RFC 7662 token introspection at /oauth/introspect: who may ask, and what they learn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from bastion.identity.tokens import hash_token
from bastion.store.models import OAuthToken
from bastion.store.tenancy import SYSTEM
from tests.harness import Bastion, run_bastion
from tests.oauth.flows import Flow, bump_and_wait, own_database, publish_demo

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("introspection"), rate_limit_token="10000/minute") as bastion:
        publish_demo(bastion, "demo", "other")
        yield bastion


@pytest.fixture
async def flow(gw: Bastion) -> AsyncIterator[Flow]:
    async with Flow(gw) as person:
        yield person


def service_client(gw: Bastion, *servers: str, scopes: tuple[str, ...] = ("mcp",)) -> dict[str, Any]:
    body = {"name": "resource server", "servers": list(servers), "scopes": list(scopes)}
    created: dict[str, Any] = gw.ok("POST", "/api/oauth/clients", json=body)
    return created


def basic(client: dict[str, Any]) -> tuple[str, str]:
    return client["client_id"], client["client_secret"]


async def client_token(gw: Bastion, http: httpx.AsyncClient, client: dict[str, Any], slug: str) -> str:
    form = {"grant_type": "client_credentials", "resource": gw.mcp_url(slug)}
    response = await http.post("/oauth/token", data=form, auth=basic(client))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def introspect(http: httpx.AsyncClient, caller: dict[str, Any], token: str, **form: str) -> httpx.Response:
    return await http.post("/oauth/introspect", data={"token": token, **form}, auth=basic(caller))


async def test_a_live_token_is_described_to_a_service_client(gw: Bastion, flow: Flow) -> None:
    caller = service_client(gw, "demo", scopes=("mcp:read",))
    token = await client_token(gw, flow.http, caller, "demo")
    response = await introspect(flow.http, caller, token, token_type_hint="access_token")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"  # RFC 7662 §2.2 via RFC 6749 §5.1
    answer = response.json()
    admin = next(user for user in gw.ok("GET", "/api/users") if user["username"] == "admin")
    now = datetime.now(UTC).timestamp()
    assert answer["active"] is True
    assert answer["scope"] == "mcp:read"
    assert answer["client_id"] == caller["client_id"]
    assert answer["username"] == "admin" and answer["sub"] == admin["id"] and answer["org_id"] == "default"
    assert answer["aud"] == gw.mcp_url("demo") and answer["iss"] == gw.base_url
    assert answer["token_type"] == "Bearer"
    assert answer["iat"] <= now + 1 and answer["exp"] - answer["iat"] == 600


async def test_a_users_token_for_a_server_the_caller_may_reach_is_described(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens(slug="demo", scope="mcp:read")
    caller = service_client(gw, "demo")
    answer = (await introspect(flow.http, caller, tokens.access_token)).json()
    assert answer["active"] is True and answer["client_id"] == tokens.client_id
    assert answer["username"] == "admin" and answer["scope"] == "mcp:read"
    assert tokens.refresh_token is not None
    refresh = (await introspect(flow.http, caller, tokens.refresh_token)).json()
    assert refresh["active"] is True and "token_type" not in refresh  # a refresh token is not a Bearer token
    # Once rotated, a refresh token is spent.
    assert (await flow.refresh(tokens.client_id, tokens.refresh_token)).status_code == 200
    assert (await introspect(flow.http, caller, tokens.refresh_token)).json() == {"active": False}


async def test_a_revoked_token_is_inactive(gw: Bastion, flow: Flow) -> None:
    caller = service_client(gw, "demo")
    token = await client_token(gw, flow.http, caller, "demo")
    assert (await flow.http.post("/oauth/revoke", data={"token": token}, auth=basic(caller))).status_code == 200
    response = await introspect(flow.http, caller, token)
    assert response.status_code == 200 and response.json() == {"active": False}


async def test_unknown_and_expired_tokens_are_inactive(gw: Bastion, flow: Flow) -> None:
    caller = service_client(gw, "demo")
    assert (await introspect(flow.http, caller, "bst_at_never-issued")).json() == {"active": False}
    token = await client_token(gw, flow.http, caller, "demo")
    async with own_database(gw) as db:
        async with db.session(SYSTEM) as session:
            past = datetime.now(UTC) - timedelta(seconds=5)
            await session.execute(
                update(OAuthToken).where(OAuthToken.token_hash == hash_token(token)).values(expires_at=past)
            )
        await bump_and_wait(gw, db)
    assert (await introspect(flow.http, caller, token)).json() == {"active": False}


async def test_tokens_for_servers_beyond_the_callers_reach_are_inactive(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens(slug="demo")
    elsewhere = service_client(gw, "other")
    # RFC 7662 §4: a caller learns nothing about tokens that do not concern it.
    assert (await introspect(flow.http, elsewhere, tokens.access_token)).json() == {"active": False}
    # Its own tokens concern it wherever they lead.
    own = await client_token(gw, flow.http, elsewhere, "other")
    assert (await introspect(flow.http, elsewhere, own)).json()["aud"] == gw.mcp_url("other")


async def test_public_clients_may_not_introspect(flow: Flow) -> None:
    tokens = await flow.tokens()
    form = {"token": tokens.access_token, "client_id": tokens.client_id}
    response = await flow.http.post("/oauth/introspect", data=form)
    assert response.status_code == 401
    assert response.json() == {
        "error": "invalid_client",
        "error_description": "only service clients authenticated with a client secret may introspect tokens",
    }


async def test_a_wrong_secret_or_no_credentials_is_invalid_client(gw: Bastion, flow: Flow) -> None:
    caller = service_client(gw, "demo")
    wrong = await flow.http.post("/oauth/introspect", data={"token": "x"}, auth=(caller["client_id"], "bst_cs_x"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    anonymous = await flow.http.post("/oauth/introspect", data={"token": "x"})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"


async def test_a_basic_header_that_is_not_base64_text_is_invalid_client_not_a_500(flow: Flow) -> None:
    for endpoint in ("/oauth/introspect", "/oauth/token", "/oauth/revoke"):
        for credentials in (
            b"Basic \xe9\xe9\xe9\xe9",
            b"Basic !!!!",
            b"Basic /w==",
        ):  # non-ASCII, not base64, not UTF-8
            response = await flow.http.post(endpoint, data={"token": "x"}, headers={b"authorization": credentials})
            assert response.status_code == 401, (endpoint, credentials, response.text)
            assert response.json()["error"] == "invalid_client"


async def test_a_request_without_a_token_is_invalid_request(gw: Bastion, flow: Flow) -> None:
    caller = service_client(gw, "demo")
    response = await flow.http.post("/oauth/introspect", data={}, auth=basic(caller))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
