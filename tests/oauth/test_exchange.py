"""RFC 8693 token exchange: a service client trades a user's access token for one of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest

from tests.harness import Bastion, run_bastion
from tests.oauth.flows import Flow, Tokens, mcp_request, publish_demo

pytestmark = pytest.mark.anyio

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("exchange"), rate_limit_token="10000/minute") as bastion:
        publish_demo(bastion, "demo", "other", "third")
        yield bastion


@pytest.fixture
async def flow(gw: Bastion) -> AsyncIterator[Flow]:
    async with Flow(gw) as person:
        yield person


@pytest.fixture
def agent(gw: Bastion) -> dict[str, Any]:
    """A service client allowed to exchange tokens and to reach "other"."""
    body = {"name": "agent platform", "servers": ["other"], "grant_types": [EXCHANGE]}
    created: dict[str, Any] = gw.ok("POST", "/api/oauth/clients", json=body)
    return created


async def exchange(http: httpx.AsyncClient, client: dict[str, Any], subject: str, **form: str) -> httpx.Response:
    body = {"grant_type": EXCHANGE, "subject_token": subject, "subject_token_type": ACCESS_TOKEN, **form}
    return await http.post("/oauth/token", data=body, auth=(client["client_id"], client["client_secret"]))


async def introspect(http: httpx.AsyncClient, client: dict[str, Any], token: str) -> dict[str, Any]:
    response = await http.post(
        "/oauth/introspect", data={"token": token}, auth=(client["client_id"], client["client_secret"])
    )
    answer: dict[str, Any] = response.json()
    return answer


def assert_error(response: httpx.Response, error: str, words: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert words in response.json()["error_description"]


async def user_tokens(flow: Flow, scope: str | None = None) -> Tokens:
    return await flow.tokens(slug="demo", scope=scope)


async def test_a_users_token_is_exchanged_for_one_to_a_server_the_client_may_reach(
    gw: Bastion, flow: Flow, agent: dict[str, Any]
) -> None:
    user = await user_tokens(flow)
    response = await exchange(flow.http, agent, user.access_token, resource=gw.mcp_url("other"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == ACCESS_TOKEN  # RFC 8693 §2.2.1
    assert body["token_type"] == "Bearer" and body["scope"] == "mcp" and "refresh_token" not in body
    assert 0 < body["expires_in"] <= 600
    assert (await mcp_request(flow.http, gw.mcp_url("other"), body["access_token"])).status_code == 200
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), body["access_token"])).status_code == 401
    # The new token acts for the user and is issued to the client that asked.
    described = await introspect(flow.http, agent, body["access_token"])
    assert described["username"] == "admin" and described["client_id"] == agent["client_id"]
    assert described["aud"] == gw.mcp_url("other")


async def test_without_a_resource_the_token_is_for_the_subject_tokens_server(
    gw: Bastion, flow: Flow, agent: dict[str, Any]
) -> None:
    user = await user_tokens(flow)
    body = (await exchange(flow.http, agent, user.access_token)).json()
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), body["access_token"])).status_code == 200


async def test_the_audience_parameter_names_the_target_like_resource(
    gw: Bastion, flow: Flow, agent: dict[str, Any]
) -> None:
    user = await user_tokens(flow)
    body = (await exchange(flow.http, agent, user.access_token, audience=gw.mcp_url("other"))).json()
    assert (await mcp_request(flow.http, gw.mcp_url("other"), body["access_token"])).status_code == 200
    clash = await exchange(
        flow.http, agent, user.access_token, audience=gw.mcp_url("other"), resource=gw.mcp_url("demo")
    )
    assert_error(clash, "invalid_target", "resource and audience name different servers")


async def test_a_server_neither_of_the_subject_token_nor_of_the_client_is_an_invalid_target(
    gw: Bastion, flow: Flow, agent: dict[str, Any]
) -> None:
    user = await user_tokens(flow)
    response = await exchange(flow.http, agent, user.access_token, resource=gw.mcp_url("third"))
    assert_error(response, "invalid_target", "neither the subject token's server nor one this client may reach")


async def test_scopes_may_narrow_but_never_exceed_the_subject_tokens(
    gw: Bastion, flow: Flow, agent: dict[str, Any]
) -> None:
    user = await user_tokens(flow, scope="mcp:read")
    broader = await exchange(flow.http, agent, user.access_token, scope="mcp")
    assert_error(broader, "invalid_scope", "exceeds what was granted")
    full = await user_tokens(flow)
    narrowed = await exchange(flow.http, agent, full.access_token, scope="mcp:read")
    assert narrowed.json()["scope"] == "mcp:read"


async def test_the_new_tokens_scopes_stay_within_what_the_client_was_given(gw: Bastion, flow: Flow) -> None:
    """An administrator's scopes for a service client cap what token exchange gives it, as they cap
    client credentials: a user's full token does not lift a read-only client to writing."""
    body = {"name": "reader", "servers": ["other"], "scopes": ["mcp:read"], "grant_types": [EXCHANGE]}
    reader: dict[str, Any] = gw.ok("POST", "/api/oauth/clients", json=body)
    user = await user_tokens(flow)
    for form in ({"resource": gw.mcp_url("other")}, {}, {"resource": gw.mcp_url("other"), "scope": "mcp"}):
        response = await exchange(flow.http, reader, user.access_token, **form)
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == "mcp:read", form
        assert (await introspect(flow.http, reader, response.json()["access_token"]))["scope"] == "mcp:read"


async def test_a_revoked_or_unknown_subject_token_is_invalid_request(
    gw: Bastion, flow: Flow, agent: dict[str, Any]
) -> None:
    user = await user_tokens(flow)
    await flow.http.post("/oauth/revoke", data={"token": user.access_token, "client_id": user.client_id})
    revoked = await exchange(flow.http, agent, user.access_token)
    # RFC 8693 §2.2.2: an invalid subject token is invalid_request, not invalid_grant.
    assert_error(revoked, "invalid_request", "not a live Bastion access token")
    assert_error(await exchange(flow.http, agent, "bst_at_unknown"), "invalid_request", "unknown, expired or revoked")
    assert user.refresh_token is not None
    as_refresh = await exchange(flow.http, agent, user.refresh_token)
    assert_error(as_refresh, "invalid_request", "not a live Bastion access token")


async def test_the_new_token_is_revoked_with_its_subject_token_or_the_grant_it_came_from(
    gw: Bastion, flow: Flow, agent: dict[str, Any]
) -> None:
    for revoked in ("access_token", "refresh_token"):  # one token (RFC 7009), or the whole grant
        user = await user_tokens(flow)
        body = (await exchange(flow.http, agent, user.access_token, resource=gw.mcp_url("other"))).json()
        assert (await mcp_request(flow.http, gw.mcp_url("other"), body["access_token"])).status_code == 200
        await flow.http.post("/oauth/revoke", data={"token": getattr(user, revoked), "client_id": user.client_id})
        assert (await mcp_request(flow.http, gw.mcp_url("other"), body["access_token"])).status_code == 401, revoked
        assert (await introspect(flow.http, agent, body["access_token"])) == {"active": False}


async def test_deleting_the_subject_tokens_server_revokes_what_was_exchanged_for_it(
    gw: Bastion, flow: Flow, agent: dict[str, Any]
) -> None:
    gone = await anyio.to_thread.run_sync(lambda: gw.publish_server("gone", {"origin": "inventory"}))
    user = await flow.tokens(slug="gone")
    body = (await exchange(flow.http, agent, user.access_token, resource=gw.mcp_url("other"))).json()
    assert (await mcp_request(flow.http, gw.mcp_url("other"), body["access_token"])).status_code == 200
    await anyio.to_thread.run_sync(lambda: gw.ok("DELETE", f"/api/servers/{gone['id']}"))
    assert (await mcp_request(flow.http, gw.mcp_url("other"), body["access_token"])).status_code == 401


async def test_only_access_tokens_are_exchanged_and_issued(gw: Bastion, flow: Flow, agent: dict[str, Any]) -> None:
    user = await user_tokens(flow)
    id_token_type = "urn:ietf:params:oauth:token-type:id_token"
    assert_error(
        await exchange(flow.http, agent, user.access_token, subject_token_type=id_token_type),
        "invalid_request",
        "subject_token_type must be",
    )
    assert_error(
        await exchange(flow.http, agent, user.access_token, requested_token_type=id_token_type),
        "invalid_request",
        "requested_token_type must be",
    )
    missing = await flow.http.post(
        "/oauth/token", data={"grant_type": EXCHANGE}, auth=(agent["client_id"], agent["client_secret"])
    )
    assert_error(missing, "invalid_request", "subject_token is required")


async def test_an_actor_token_is_refused_because_the_client_is_the_actor(
    gw: Bastion, flow: Flow, agent: dict[str, Any]
) -> None:
    user = await user_tokens(flow)
    response = await exchange(
        flow.http, agent, user.access_token, actor_token=user.access_token, actor_token_type=ACCESS_TOKEN
    )
    assert_error(response, "invalid_request", "actor_token is not supported")


async def test_a_client_not_registered_for_exchange_is_an_unauthorized_client(gw: Bastion, flow: Flow) -> None:
    plain = gw.ok("POST", "/api/oauth/clients", json={"name": "cc only", "servers": ["other"]})
    user = await user_tokens(flow)
    response = await exchange(flow.http, plain, user.access_token)
    assert_error(response, "unauthorized_client", "not registered for the " + EXCHANGE)


async def test_public_clients_may_not_exchange(gw: Bastion, flow: Flow) -> None:
    user = await user_tokens(flow)
    form = {
        "grant_type": EXCHANGE,
        "client_id": user.client_id,
        "subject_token": user.access_token,
        "subject_token_type": ACCESS_TOKEN,
    }
    response = await flow.http.post("/oauth/token", data=form)
    assert_error(response, "unauthorized_client", "not registered for the " + EXCHANGE)
