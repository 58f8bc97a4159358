"""A person sees the consents they gave and withdraws one: the application's tokens stop at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.harness import ADMIN_PASSWORD, Bastion, run_bastion
from tests.oauth.flows import Flow, Pkce, mcp_request, publish_demo

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("consents")) as bastion:
        publish_demo(bastion, "demo")
        yield bastion


@pytest.fixture
async def flow(gw: Bastion) -> AsyncIterator[Flow]:
    async with Flow(gw) as person:
        yield person


async def test_withdrawing_a_consent_revokes_the_clients_tokens_and_asks_again_next_time(
    gw: Bastion, flow: Flow
) -> None:
    tokens = await flow.tokens()
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)).status_code == 200

    signed_in = await flow.http.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
    csrf = signed_in.json()["csrf"]
    listed = (await flow.http.get("/auth/consents")).json()
    mine = [c for c in listed if c["client_id"] == tokens.client_id]
    assert len(mine) == 1 and mine[0]["server_slug"] == "demo" and mine[0]["scopes"] == ["mcp"]
    assert mine[0]["client_name"] == "Flow test client"

    forged = await flow.http.delete(f"/auth/consents/{mine[0]['id']}")
    assert forged.status_code == 403  # no CSRF header: nothing withdrawn
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)).status_code == 200

    withdrawn = await flow.http.delete(f"/auth/consents/{mine[0]['id']}", headers={"x-csrf-token": csrf})
    assert withdrawn.status_code == 204
    refused = await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)
    assert refused.status_code == 401
    assert all(c["id"] != mine[0]["id"] for c in (await flow.http.get("/auth/consents")).json())
    refresh = await flow.refresh(tokens.client_id, str(tokens.refresh_token))
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


async def test_withdrawing_a_consent_spends_a_code_not_yet_redeemed(gw: Bastion, flow: Flow) -> None:
    """The code was issued under the consent: redeemed after it is withdrawn, it must not give tokens."""
    client_id = str((await flow.register())["client_id"])
    pkce = Pkce.new()
    code = await flow.code_for(client_id, pkce)
    signed_in = await flow.http.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
    consent = next(c for c in (await flow.http.get("/auth/consents")).json() if c["client_id"] == client_id)
    withdrawn = await flow.http.delete(
        f"/auth/consents/{consent['id']}", headers={"x-csrf-token": signed_in.json()["csrf"]}
    )
    assert withdrawn.status_code == 204
    redeemed = await flow.exchange(client_id, code, pkce)
    assert redeemed.status_code == 400 and redeemed.json()["error"] == "invalid_grant", redeemed.text


async def test_a_csrf_header_with_non_ascii_characters_is_refused_not_a_500(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens()
    await flow.http.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
    consent = next(c for c in (await flow.http.get("/auth/consents")).json() if c["client_id"] == tokens.client_id)
    forged = await flow.http.delete(f"/auth/consents/{consent['id']}", headers={b"x-csrf-token": "\xe9t\xe9".encode()})
    assert forged.status_code == 403
    assert any(c["id"] == consent["id"] for c in (await flow.http.get("/auth/consents")).json())


async def test_another_users_consent_cannot_be_seen_or_withdrawn(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens()
    await flow.http.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
    consent = next(c for c in (await flow.http.get("/auth/consents")).json() if c["client_id"] == tokens.client_id)

    gw.ok("POST", "/api/users", json={"username": "mallory", "password": "violet otter harbour 77"})
    async with Flow(gw) as other:
        signed_in = await other.http.post(
            "/auth/session", json={"username": "mallory", "password": "violet otter harbour 77"}
        )
        assert (await other.http.get("/auth/consents")).json() == []
        attempt = await other.http.delete(
            f"/auth/consents/{consent['id']}", headers={"x-csrf-token": signed_in.json()["csrf"]}
        )
        assert attempt.status_code == 404
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)).status_code == 200
