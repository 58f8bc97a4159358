"""Service credentials (scenario C) end to end, and the proof that no client token reaches an origin.

The origin records the Authorization and X-API-Key headers of every request it
receives. Clients call through Bastion with an API token and with an OAuth
access token; the origin only ever sees the credential sealed for it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bastion.store.models import Origin
from bastion.store.tenancy import SYSTEM
from bastion.vault.envelope import MasterKey
from bastion.vault.keys import encode_key
from tests.harness import Bastion, free_port, run_bastion, wait_for_port
from tests.oauth.flows import Flow, mcp_request, own_database

pytestmark = pytest.mark.anyio

ORIGIN_TOKEN = "origin-side-token-7d1f"
MASTER = MasterKey.generate("k1")


@dataclass
class Recorder:
    url: str
    log: Path

    def seen(self) -> list[dict[str, str | None]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def reset(self) -> None:
        self.log.write_text("")


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    log = tmp_path_factory.mktemp("recorder") / "headers.jsonl"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.origins.recorder", "--port", str(port), "--log", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield Recorder(f"http://127.0.0.1:{port}/mcp", log)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, recorder: Recorder) -> Iterator[Bastion]:
    key = f"{MASTER.kid}:{encode_key(MASTER.key)}"
    with run_bastion(tmp_path_factory.mktemp("vault"), master_key=key) as bastion:
        auth = {"mode": "bearer", "token": ORIGIN_TOKEN}
        origin = bastion.add_origin("secured", url=recorder.url, auth=auth)
        assert origin["auth_mode"] == "bearer" and origin["last_error"] is None, origin
        bastion.publish_server("demo", {"origin": "secured"})
        yield bastion


def _origin(gw: Bastion) -> dict[str, Any]:
    [origin] = [o for o in gw.ok("GET", "/api/origins") if o["name"] == "secured"]
    assert isinstance(origin, dict)
    return origin


async def _call_through(gw: Bastion, api_token: str) -> None:
    async with gw.client("demo", api_token) as client:
        result = await client.call_tool("list_stock", {})
        assert not result.is_error


async def test_the_origin_sees_its_own_credential_and_never_a_client_token(gw: Bastion, recorder: Recorder) -> None:
    recorder.reset()
    api_token = gw.token("demo")
    await _call_through(gw, api_token)
    async with Flow(gw) as person:
        oauth = await person.tokens(slug="demo", scope="mcp")
        reply = await mcp_request(
            person.http, gw.mcp_url("demo"), oauth.access_token, "tools/call", name="list_stock", arguments={}
        )
        assert reply.status_code == 200 and "result" in reply.json(), reply.text
    seen = recorder.seen()
    assert seen, "the origin received nothing"
    assert {entry["authorization"] for entry in seen} == {f"Bearer {ORIGIN_TOKEN}"}
    client_tokens = {api_token, oauth.access_token, gw.admin_token}
    assert not any(token in json.dumps(seen) for token in client_tokens)


async def test_the_secret_is_sealed_in_the_store_and_never_shown(gw: Bastion) -> None:
    shown = json.dumps([gw.ok("GET", "/api/origins"), gw.ok("GET", f"/api/origins/{_origin(gw)['id']}")])
    assert ORIGIN_TOKEN not in shown and '"auth_mode": "bearer"' in shown
    async with own_database(gw) as db, db.session(SYSTEM) as session:
        stored = await session.scalar(select(Origin.credential).where(Origin.name == "secured"))
    assert stored is not None and stored.startswith("v1.k1.") and ORIGIN_TOKEN not in stored


async def test_an_api_key_header_or_basic_auth_replaces_the_bearer_token(gw: Bastion, recorder: Recorder) -> None:
    origin_id = _origin(gw)["id"]
    api_token = gw.token("demo")
    try:
        gw.ok("PUT", f"/api/origins/{origin_id}/auth", json={"mode": "header", "name": "X-API-Key", "value": "k-42"})
        recorder.reset()
        await _call_through(gw, api_token)
        assert {(e["authorization"], e["x-api-key"]) for e in recorder.seen()} == {(None, "k-42")}

        basic = {"mode": "basic", "username": "svc", "password": "pw-9"}
        assert gw.ok("PUT", f"/api/origins/{origin_id}/auth", json=basic)["auth_mode"] == "basic"
        recorder.reset()
        await _call_through(gw, api_token)
        expected = "Basic " + base64.b64encode(b"svc:pw-9").decode()
        assert {(e["authorization"], e["x-api-key"]) for e in recorder.seen()} == {(expected, None)}

        assert gw.ok("PUT", f"/api/origins/{origin_id}/auth", json={"mode": "none"})["auth_mode"] == "none"
        recorder.reset()
        await _call_through(gw, api_token)
        assert {(e["authorization"], e["x-api-key"]) for e in recorder.seen()} == {(None, None)}
    finally:
        gw.ok("PUT", f"/api/origins/{origin_id}/auth", json={"mode": "bearer", "token": ORIGIN_TOKEN})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"mode": "bearer"}, "needs token"),
        ({"mode": "header", "name": "Host", "value": "x"}, "set by Bastion itself"),
        ({"mode": "basic", "username": "u", "password": "p", "token": "t"}, "takes no token"),
        ({"mode": "bearer", "token": "a\r\nInjected: yes"}, "line breaks"),
        ({"mode": "header", "name": "X-Key", "value": "Injected\u2019"}, "only Latin-1 characters"),
    ],
)
async def test_malformed_credentials_are_refused_without_echoing_the_secret(
    gw: Bastion, body: dict[str, str], message: str
) -> None:
    response = gw.api("PUT", f"/api/origins/{_origin(gw)['id']}/auth", json=body)
    assert response.status_code == 422 and message in response.text
    assert "Injected" not in response.text


async def test_a_stdio_origin_takes_no_header_credential(gw: Bastion) -> None:
    body = {
        "name": "local",
        "transport": "stdio",
        "command": [sys.executable, "-m", "bastion.demo.inventory"],
        "auth": {"mode": "bearer", "token": "x"},
    }
    response = gw.api("POST", "/api/origins", json=body)
    assert response.status_code == 400 and "a stdio origin takes its credential as mode env" in response.text


def test_without_a_master_key_no_credential_can_be_stored(tmp_path: Path, recorder: Recorder) -> None:
    with run_bastion(tmp_path) as bastion:
        body = {"name": "x", "transport": "http", "url": recorder.url, "auth": {"mode": "bearer", "token": "t"}}
        response = bastion.api("POST", "/api/origins", json=body)
        assert response.status_code == 400 and "BASTION_MASTER_KEY" in response.text
        assert bastion.ok("GET", "/api/origins") == []  # nothing half-written
