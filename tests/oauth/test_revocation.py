"""RFC 7009 token revocation at /oauth/revoke, judged through the token endpoint and the data plane."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.harness import Bastion, run_bastion
from tests.oauth.flows import Flow, mcp_request, publish_demo

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("revocation"), rate_limit_token="10000/minute") as bastion:
        publish_demo(bastion, "demo")
        yield bastion


@pytest.fixture
async def flow(gw: Bastion) -> AsyncIterator[Flow]:
    async with Flow(gw) as person:
        yield person


async def revoke(http: httpx.AsyncClient, token: str, **form: str) -> httpx.Response:
    return await http.post("/oauth/revoke", data={"token": token, **form})


def service_client(gw: Bastion) -> dict[str, Any]:
    created: dict[str, Any] = gw.ok("POST", "/api/oauth/clients", json={"name": "revoker", "servers": ["demo"]})
    return created


async def test_a_revoked_access_token_is_refused_on_the_very_next_request(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens()
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)).status_code == 200
    response = await revoke(flow.http, tokens.access_token, client_id=tokens.client_id)
    assert response.status_code == 200 and response.content == b""
    refused = await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    # RFC 7009 §2.1: revoking an access token leaves the grant's refresh token alone.
    assert tokens.refresh_token is not None
    assert (await flow.refresh(tokens.client_id, tokens.refresh_token)).status_code == 200


async def test_revoking_a_refresh_token_revokes_its_whole_family(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens()
    assert tokens.refresh_token is not None
    response = await revoke(
        flow.http, tokens.refresh_token, client_id=tokens.client_id, token_type_hint="refresh_token"
    )
    assert response.status_code == 200
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)).status_code == 401
    refreshed = await flow.refresh(tokens.client_id, tokens.refresh_token)
    assert refreshed.status_code == 400
    assert refreshed.json() == {"error": "invalid_grant", "error_description": "the refresh token was revoked"}


async def test_a_wrong_token_type_hint_does_not_stop_the_revocation(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens()
    for hint in ("refresh_token", "no-such-type"):  # RFC 7009 §2.1: the search extends to every type
        assert (await revoke(flow.http, "bst_at_unknown", client_id=tokens.client_id, token_type_hint=hint)).is_success
    response = await revoke(flow.http, tokens.access_token, client_id=tokens.client_id, token_type_hint="refresh_token")
    assert response.status_code == 200
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)).status_code == 401


async def test_a_token_of_another_client_is_not_revoked_though_the_answer_is_still_200(gw: Bastion, flow: Flow) -> None:
    victim = await flow.tokens()
    other = await flow.register()
    response = await revoke(flow.http, victim.access_token, client_id=other["client_id"])
    assert response.status_code == 200  # RFC 7009 §2.2: the same answer as for a revoked token
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), victim.access_token)).status_code == 200


async def test_an_unknown_token_is_answered_200(flow: Flow) -> None:
    client = await flow.register()
    response = await revoke(flow.http, "bst_at_never-issued", client_id=client["client_id"])
    assert response.status_code == 200 and response.content == b""


async def test_a_confidential_client_must_prove_its_secret_to_revoke(gw: Bastion, flow: Flow) -> None:
    client = service_client(gw)
    form = {"grant_type": "client_credentials", "resource": gw.mcp_url("demo")}
    auth = (client["client_id"], client["client_secret"])
    token = (await flow.http.post("/oauth/token", data=form, auth=auth)).json()["access_token"]

    by_id_alone = await revoke(flow.http, token, client_id=client["client_id"])
    assert by_id_alone.status_code == 401
    assert by_id_alone.json() == {"error": "invalid_client", "error_description": "client authentication failed"}
    assert by_id_alone.headers["www-authenticate"].startswith("Basic")
    wrong = await flow.http.post("/oauth/revoke", data={"token": token}, auth=(client["client_id"], "bst_cs_x"))
    assert wrong.status_code == 401
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), token)).status_code == 200

    assert (await flow.http.post("/oauth/revoke", data={"token": token}, auth=auth)).status_code == 200
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), token)).status_code == 401


async def test_an_unknown_client_is_invalid_client(flow: Flow) -> None:
    response = await revoke(flow.http, "bst_at_whatever", client_id="no-such-client")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_a_request_without_a_token_is_invalid_request(flow: Flow) -> None:
    client = await flow.register()
    response = await flow.http.post("/oauth/revoke", data={"client_id": client["client_id"]})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "token is required" in response.json()["error_description"]


async def test_parameters_must_be_form_encoded(flow: Flow) -> None:
    response = await flow.http.post("/oauth/revoke", json={"token": "bst_at_x", "client_id": "x"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
