"""An authorization server whose store fails mid-request still answers its token endpoint the way
OAuth clients parse (RFC 6749 §5.2: a JSON object with `error`), never a bare "Internal Server
Error" page, says nothing of the failure's details, and issues nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.harness import Bastion, run_bastion
from tests.oauth.flows import Flow, Pkce, publish_demo

pytestmark = pytest.mark.anyio

_REFUSE_TOKENS = (
    "CREATE TRIGGER refuse_tokens BEFORE INSERT ON oauth_tokens "
    "BEGIN SELECT RAISE(ABORT, 'token disk full at /var/lib/secret-path'); END"
)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("token-failure")) as bastion:
        publish_demo(bastion, "demo")
        yield bastion


@pytest.fixture
async def flow(gw: Bastion) -> AsyncIterator[Flow]:
    async with Flow(gw) as flow:
        yield flow


async def test_a_failing_store_answers_the_token_request_as_oauth_clients_parse(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens()
    assert tokens.refresh_token is not None
    database = Path(gw.settings.database_url.removeprefix("sqlite+aiosqlite:///"))
    with sqlite3.connect(database) as db:
        db.execute(_REFUSE_TOKENS)
    try:
        failed = await flow.refresh(tokens.client_id, tokens.refresh_token)
    finally:
        with sqlite3.connect(database) as db:
            db.execute("DROP TRIGGER refuse_tokens")
    assert failed.status_code == 500 and failed.headers["content-type"] == "application/json", failed.text
    body = failed.json()
    assert body["error"] == "server_error" and "try again" in body["error_description"], body
    assert "secret-path" not in failed.text and "disk full" not in failed.text  # no internals
    assert failed.headers["cache-control"] == "no-store"
    # Nothing was half-issued: the refresh token was not spent by the failed attempt.
    again = await flow.refresh(tokens.client_id, tokens.refresh_token)
    assert again.status_code == 200, again.text


async def test_a_code_whose_tokens_the_store_failed_to_save_can_be_redeemed_again(gw: Bastion, flow: Flow) -> None:
    client_id = str((await flow.register())["client_id"])
    pkce = Pkce.new()
    code = await flow.code_for(client_id, pkce, slug="demo")
    database = Path(gw.settings.database_url.removeprefix("sqlite+aiosqlite:///"))
    with sqlite3.connect(database) as db:
        db.execute(_REFUSE_TOKENS)
    try:
        failed = await flow.exchange(client_id, code, pkce, slug="demo")
    finally:
        with sqlite3.connect(database) as db:
            db.execute("DROP TRIGGER refuse_tokens")
    assert failed.status_code == 500 and failed.json()["error"] == "server_error", failed.text
    redeemed = await flow.exchange(client_id, code, pkce, slug="demo")
    assert redeemed.status_code == 200 and redeemed.json()["access_token"], redeemed.text
    # Redeemed now: a third attempt is a replay, refused as before.
    assert (await flow.exchange(client_id, code, pkce, slug="demo")).json()["error"] == "invalid_grant"
