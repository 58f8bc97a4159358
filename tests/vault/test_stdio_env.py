"""A stdio origin's credential: variables sealed by the vault and set in its process's environment at
each start, never on its command line (where any local account reads it) nor shown again."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bastion.store.models import Origin
from bastion.store.tenancy import SYSTEM
from bastion.vault.envelope import MasterKey
from bastion.vault.keys import encode_key
from tests.harness import Bastion, run_bastion
from tests.oauth.flows import own_database

pytestmark = pytest.mark.anyio

PROBE = [sys.executable, "-m", "tests.origins.probe"]
MASTER = MasterKey.generate("k-env")
SECRET = "ghp_env-secret-7f3a"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("stdio-env"), master_key=f"{MASTER.kid}:{encode_key(MASTER.key)}") as b:
        origin = b.add_origin("probe", command=PROBE)
        b.publish_server("envs", {"origin": "probe", "items": ["env_digest"]})
        b.ok("PUT", f"/api/origins/{origin['id']}/auth", json={"mode": "env", "env": {"PROBE_API_TOKEN": SECRET}})
        yield b


async def _seen(gw: Bastion, name: str) -> dict[str, Any]:
    async with gw.client("envs", gw.token("envs")) as client:
        result = await client.call_tool("env_digest", {"name": name})
    seen: dict[str, Any] = json.loads(result.content[0].text)  # type: ignore[union-attr]
    return seen


async def test_the_process_has_the_variable_and_its_command_line_does_not(gw: Bastion) -> None:
    seen = await _seen(gw, "PROBE_API_TOKEN")
    assert seen["digest"] == hashlib.sha256(SECRET.encode()).hexdigest()
    assert SECRET not in json.dumps(seen["argv"])


async def test_the_secret_is_sealed_and_never_shown(gw: Bastion) -> None:
    [origin] = [o for o in gw.ok("GET", "/api/origins") if o["name"] == "probe"]
    shown = json.dumps([origin, gw.ok("GET", f"/api/origins/{origin['id']}")])
    assert SECRET not in shown and origin["auth_mode"] == "env"
    async with own_database(gw) as db, db.session(SYSTEM) as session:
        stored = await session.scalar(select(Origin.credential).where(Origin.name == "probe"))
    assert stored is not None and stored.startswith("v1.") and SECRET not in stored


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"LD_PRELOAD": "/tmp/x.so"}, "ending _KEY, _TOKEN"),  # would run code the allowlist never admitted
        ({"NODE_OPTIONS": "--require /tmp/x.js"}, "ending _KEY, _TOKEN"),
        ({"UV_INDEX_URL": "https://evil.example/simple"}, "ending _KEY, _TOKEN"),  # uvx would install from it
        ({"api_key": "x"}, "upper case"),
        ({"A_KEY": "with\u0000nul"}, "without NUL"),
        ({}, "1 to 32 variables"),
    ],
)
def test_a_variable_that_could_load_code_or_is_malformed_is_refused(
    gw: Bastion, env: dict[str, str], words: str
) -> None:
    [origin] = [o for o in gw.ok("GET", "/api/origins") if o["name"] == "probe"]
    refused = gw.api("PUT", f"/api/origins/{origin['id']}/auth", json={"mode": "env", "env": env})
    assert refused.status_code == 422 and words in refused.text, refused.text


def test_env_is_for_stdio_origins_and_headers_for_http_ones(gw: Bastion) -> None:
    [origin] = [o for o in gw.ok("GET", "/api/origins") if o["name"] == "probe"]
    bearer = gw.api("PUT", f"/api/origins/{origin['id']}/auth", json={"mode": "bearer", "token": "t"})
    assert bearer.status_code == 400 and "mode env" in bearer.json()["error"]["message"]
    http = gw.ok("POST", "/api/origins", json={"name": "web", "transport": "http", "url": "http://127.0.0.1:9/mcp"})
    env = gw.api("PUT", f"/api/origins/{http['id']}/auth", json={"mode": "env", "env": {"A_KEY": "v"}})
    assert env.status_code == 400 and "header credential" in env.json()["error"]["message"]


@pytest.mark.parametrize(
    "command",
    [
        [*PROBE, "--token=s3cret-value"],
        [*PROBE, "--api-key", "s3cret-value"],
        [*PROBE, "ghp_" + "a" * 36],  # a GitHub token's shape
    ],
)
def test_a_command_that_carries_a_secret_is_refused_and_not_echoed(gw: Bastion, command: list[str]) -> None:
    """A command is stored in the clear, shown to every reader of the origin, and visible in `ps`."""
    refused = gw.api("POST", "/api/origins", json={"name": "leaky", "transport": "stdio", "command": command})
    assert refused.status_code == 422 and "auth mode env" in refused.text, refused.text
    assert "s3cret-value" not in refused.text and "a" * 36 not in refused.text


def test_a_url_whose_query_carries_a_secret_is_refused(gw: Bastion) -> None:
    body = {"name": "leaky-web", "transport": "http", "url": "https://mcp.example/mcp?api_key=s3cret-value"}
    refused = gw.api("POST", "/api/origins", json=body)
    assert refused.status_code == 422 and "origin's auth" in refused.text and "s3cret-value" not in refused.text


async def test_a_secret_an_older_registration_kept_is_hidden_in_responses(gw: Bastion) -> None:
    """Origins registered before such commands were refused keep them as stored; responses (the API,
    the console) show `[hidden]` in their place."""
    command = [*PROBE, "--token=s3cret-value", "--api-key", "s3cret-value", "--port", "8080"]
    async with own_database(gw) as db, db.session(SYSTEM) as session:
        session.add(Origin(name="legacy", transport="stdio", command=command, status="pending"))
        session.add(
            Origin(name="legacy-web", transport="http", url="http://127.0.0.1:9/mcp?region=eu&api_key=s3cret-value")
        )
    listed = {o["name"]: o for o in gw.ok("GET", "/api/origins")}
    assert listed["legacy"]["command"] == [*PROBE, "--token=[hidden]", "--api-key", "[hidden]", "--port", "8080"]
    assert listed["legacy-web"]["url"] == "http://127.0.0.1:9/mcp?region=eu&api_key=[hidden]"
    one = gw.ok("GET", f"/api/origins/{listed['legacy']['id']}")
    assert "s3cret-value" not in json.dumps([listed, one])
