"""CORS for browser clients on listed origins (`BASTION_CORS_ORIGINS`): MCP endpoints, OAuth
metadata and the admin API answer their preflights and let them read what they need; any other
origin gets no CORS answer, and MCP endpoints still refuse it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import STDIO_INVENTORY, Bastion, run_bastion
from tests.mcp.test_hardening import INIT, post

APP = "https://app.example:8443"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("cors"), cors_origins=[APP]) as bastion:
        bastion.add_origin("local", command=STDIO_INVENTORY)
        bastion.publish_server("hard", {"origin": "local"})
        yield bastion


def _preflight(gw: Bastion, path: str, origin: str, method: str = "POST", headers: str = "") -> dict[str, str]:
    asked = {"origin": origin, "access-control-request-method": method}
    if headers:
        asked["access-control-request-headers"] = headers
    response = gw.http.options(path, headers=asked)
    return {"status": str(response.status_code), **response.headers}


def test_a_listed_origin_preflights_and_speaks_mcp_reading_its_session_id(gw: Bastion) -> None:
    asked = "authorization, content-type, mcp-protocol-version, mcp-method, mcp-name, mcp-param-region"
    answer = _preflight(gw, "/servers/hard/mcp", APP, headers=asked)
    assert answer["status"] == "200" and answer["access-control-allow-origin"] == APP
    assert set(answer["access-control-allow-methods"].split(", ")) >= {"GET", "POST", "DELETE"}
    assert answer["access-control-allow-headers"] == asked  # Mcp-Param-* included
    assert "access-control-allow-credentials" not in answer  # bearer tokens, never cookies
    assert answer["x-content-type-options"] == "nosniff"  # inside the security headers' layer
    opened = post(gw, INIT, gw.token("hard"), origin=APP)
    assert opened.status_code == 200 and opened.headers["access-control-allow-origin"] == APP
    exposed = opened.headers["access-control-expose-headers"].lower()
    assert {"mcp-session-id", "www-authenticate", "mcp-protocol-version"} <= set(exposed.split(", "))
    refused = post(gw, INIT, None, origin=APP)  # the challenge that starts OAuth is readable too
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP
    assert "resource_metadata=" in refused.headers["www-authenticate"]


def test_oauth_discovery_and_the_admin_api_answer_a_listed_origin(gw: Bastion) -> None:
    metadata = gw.http.get("/.well-known/oauth-authorization-server", headers={"origin": APP})
    assert metadata.status_code == 200 and metadata.headers["access-control-allow-origin"] == APP
    answer = _preflight(gw, "/oauth/token", APP, headers="content-type, mcp-protocol-version")
    assert answer["status"] == "200" and answer["access-control-allow-origin"] == APP
    api = _preflight(gw, "/api/origins", APP, method="GET", headers="authorization, x-bastion-tenant")
    assert api["status"] == "200" and api["access-control-allow-origin"] == APP


def test_another_origin_gets_no_cors_answer_and_mcp_still_refuses_it(gw: Bastion) -> None:
    stranger = "https://evil.example"
    answer = _preflight(gw, "/servers/hard/mcp", stranger, headers="authorization")
    assert answer["status"] == "400" and "access-control-allow-origin" not in answer
    refused = post(gw, INIT, gw.token("hard"), origin=stranger)
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    assert "BASTION_ALLOWED_ORIGINS" in refused.json()["error"]["message"]
    other_port = post(gw, INIT, gw.token("hard"), origin="https://app.example:9999")  # a CORS entry is exact
    assert other_port.status_code == 403 and "access-control-allow-origin" not in other_port.headers


@pytest.mark.parametrize(
    "value",
    [
        "https://app.example/",
        "app.example",
        "https://app.example/path",
        "https://u@h",
        "*",  # every site could read every answer
        "https://App.Example",  # browsers send these lower case, without the default port: never matched
        "https://app.example:443",
        "https://app.example:99999",
    ],
)
def test_a_cors_entry_that_is_not_an_origin_stops_the_start(value: str) -> None:
    from pydantic import ValidationError

    from bastion.config import Settings

    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(cors_origins=value)
