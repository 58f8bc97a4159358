"""Token exchange toward an origin's authorization server (RFC 8693), end to end.

B plays the origin's side and trusts A as an issuer (`BASTION_ENTERPRISE_IDPS`); A, the gateway
under test, trades per person a JWT it signs for a B access token, as B's confidential client.
The server behind B's `crm` receives a JWT naming the B account each call was made for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from bastion.vault.envelope import MasterKey
from bastion.vault.keys import encode_key
from tests.governance.people import Person, add_person, call
from tests.harness import Bastion, free_port, origin_process, run_bastion

pytestmark = pytest.mark.anyio

MASTER = MasterKey.generate("k1")
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


@dataclass
class World:
    a: Bastion
    b: Bastion
    log: Path
    service: dict[str, Any]  # A's confidential client at B


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("exchange")
    log = root / "backend.jsonl"
    a_port = free_port()
    a_url = f"http://127.0.0.1:{a_port}"
    with run_bastion(root / "b", enterprise_idps={a_url: f"{a_url}/oauth/jwks.json"}) as b:
        with origin_process("tests.origins.jwt_origin", "--issuer", b.base_url, "--log", str(log)) as backend:
            b.add_origin("backend", url=backend, auth={"mode": "jwt"})
            b.publish_server("crm", {"origin": "backend"})
            grants = ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]
            body = {"name": "gateway A", "servers": ["crm"], "grant_types": grants}
            service = b.ok("POST", "/api/oauth/clients", json=body)
            with run_bastion(root / "a", port=a_port, master_key=f"{MASTER.kid}:{encode_key(MASTER.key)}") as a:
                assert a.base_url == a_url
                origin = a.ok(
                    "POST", "/api/origins", json={"name": "crm", "transport": "http", "url": b.mcp_url("crm")}
                )
                a.ok("POST", f"/api/origins/{origin['id']}/review", json={"decision": "approve"})
                auth = {
                    "mode": "exchange",
                    "client_id": service["client_id"],
                    "client_secret": service["client_secret"],
                    "scope": "mcp",
                }
                assert a.ok("PUT", f"/api/origins/{origin['id']}/auth", json=auth)["auth_mode"] == "exchange"
                found = a.ok("POST", f"/api/origins/{origin['id']}/refresh")
                assert found["last_error"] is None and found["items"], found
                a.publish_server("crm", {"origin": "crm"})
                yield World(a, b, log, service)


def _both(world: World, name: str) -> tuple[Person, Person, str]:
    """One person with an account of the same name at A and at B, and an API token at A."""
    name = f"{name}-{time.monotonic_ns()}"
    at_a, at_b = add_person(world.a, name, ["member"]), add_person(world.b, name, ["member"])
    token = world.a.ok("POST", "/api/tokens", json={"name": "t", "servers": ["crm"], "user": name})["token"]
    return at_a, at_b, token


def _list_stock(world: World, token: str) -> dict[str, Any]:
    return call(world.a, "crm", token, "tools/call", name="list_stock", arguments={})


def _backend(world: World) -> list[dict[str, Any]]:
    return [json.loads(line) for line in world.log.read_text().splitlines()]


async def test_each_person_calls_with_a_token_exchanged_for_them(world: World) -> None:
    _ann_a, ann_b, ann_token = _both(world, "ann")
    _bob_a, bob_b, bob_token = _both(world, "bob")
    assert "result" in _list_stock(world, ann_token)
    assert _backend(world)[-1]["sub"] == ann_b.id
    assert "result" in _list_stock(world, bob_token)
    assert _backend(world)[-1]["sub"] == bob_b.id
    assert "result" in _list_stock(world, ann_token)  # from the cache: no new exchange needed
    assert _backend(world)[-1]["sub"] == ann_b.id
    assert not any(t in world.log.read_text() for t in (ann_token, bob_token, world.a.admin_token))


async def test_a_person_the_origins_server_does_not_know_gets_a_clear_refusal(world: World) -> None:
    carol = add_person(world.a, f"carol-{time.monotonic_ns()}", ["member"])
    token = world.a.ok("POST", "/api/tokens", json={"name": "t", "servers": ["crm"], "user": carol.name})["token"]
    seen = len(_backend(world))
    reply = _list_stock(world, token)
    assert "error" in reply and "invalid_grant" in reply["error"]["message"], reply
    assert len(_backend(world)) == seen  # nothing reached the origin for her


async def test_the_origins_server_refuses_a_subject_jwt_from_an_issuer_it_does_not_trust(world: World) -> None:
    key = ECKey.generate_key("P-256")
    now = int(time.time())
    claims = {"iss": "https://stranger.example", "sub": "x", "aud": world.b.base_url, "iat": now, "exp": now + 60}
    forged = jwt.encode({"alg": "ES256", "typ": "at+jwt"}, {**claims, "jti": "j"}, key)
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": forged,
        "subject_token_type": JWT_TYPE,
        "resource": world.b.mcp_url("crm"),
    }
    async with httpx.AsyncClient() as http:
        refused = await http.post(
            f"{world.b.base_url}/oauth/token",
            data=form,
            auth=(world.service["client_id"], world.service["client_secret"]),
        )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert "not a trusted" in refused.json()["error_description"]
