"""RFC 7591 dynamic client registration under each of the operator's policies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.harness import Bastion, run_bastion
from tests.oauth.flows import REDIRECT_URI, Flow, Pkce, publish_demo

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("registration")) as bastion:
        publish_demo(bastion, "demo")
        yield bastion


def _register(gw: Bastion, **metadata: Any) -> httpx.Response:
    body = {"client_name": "Registration test", "redirect_uris": [REDIRECT_URI], **metadata}
    return gw.http.post("/oauth/register", json={k: v for k, v in body.items() if v is not None})


def _refused(response: httpx.Response, error: str, description: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == error, body
    assert description in body["error_description"], body
    assert response.headers["cache-control"] == "no-store"


def test_a_public_client_registers_with_201_and_gets_no_secret(gw: Bastion) -> None:
    response = _register(gw, token_endpoint_auth_method="none")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["client_id"] and isinstance(body["client_id_issued_at"], int)
    assert "client_secret" not in body
    assert body["redirect_uris"] == [REDIRECT_URI]
    assert body["token_endpoint_auth_method"] == "none"
    assert body["client_name"] == "Registration test"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_confidential_client_gets_a_secret_that_never_expires(gw: Bastion, method: str) -> None:
    response = _register(gw, token_endpoint_auth_method=method, redirect_uris=["https://app.example.com/cb"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["client_secret"]) >= 32 and body["client_secret_expires_at"] == 0
    assert body["token_endpoint_auth_method"] == method


async def test_a_confidential_client_must_prove_its_secret_at_the_token_endpoint(gw: Bastion) -> None:
    async with Flow(gw) as flow:
        registered = await flow.register(token_endpoint_auth_method="client_secret_basic")
        client_id, secret = registered["client_id"], registered["client_secret"]
        pkce = Pkce.new()
        code = await flow.code_for(client_id, pkce)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": pkce.verifier,
            "resource": gw.mcp_url("demo"),
        }
        wrong = await flow.http.post("/oauth/token", data=form, auth=(client_id, "not-the-secret"))
        assert wrong.status_code == 401
        assert wrong.json() == {"error": "invalid_client", "error_description": "client authentication failed"}
        assert wrong.headers["www-authenticate"].startswith("Basic")
        right = await flow.http.post("/oauth/token", data=form, auth=(client_id, secret))
    # The failed attempt did not spend the code: client authentication comes first.
    assert right.status_code == 200, right.text


@pytest.mark.parametrize(
    ("uris", "application_type", "description"),
    [
        (["http://app.example.com/cb"], "native", "must use https (plain http only on loopback)"),
        (["https://app.example.com/cb#frag"], "native", "has a fragment"),
        ([REDIRECT_URI], "web", "a web client must use https redirect URIs"),
        (["https://localhost/cb"], "web", "a web client may not redirect to https://localhost/cb"),
        (["myapp:/callback"], "native", "reverse-DNS native scheme"),
        (["com.example.app:/callback"], "web", "reverse-DNS native scheme"),
        # reads as claude.ai on the consent page, goes to evil.example
        (["https://claude.ai@evil.example/cb"], "web", "has a user name before its host"),
        # kept as sent: a browser goes to evil.example (a backslash is a slash to it), the page would name another
        (["https://evil.example\\.claude.ai/cb"], "web", "holds a backslash, a space or a control character"),
        (["https://app.example/c b"], "web", "holds a backslash, a space or a control character"),
    ],
)
def test_unsafe_redirect_uris_are_invalid_redirect_uri(
    gw: Bastion, uris: list[str], application_type: str, description: str
) -> None:
    _refused(_register(gw, redirect_uris=uris, application_type=application_type), "invalid_redirect_uri", description)


def test_a_native_client_may_use_a_reverse_dns_scheme(gw: Bastion) -> None:
    response = _register(gw, redirect_uris=["com.example.app:/callback"], application_type="native")
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("metadata", "description"),
    [
        ({"grant_types": ["authorization_code", "client_credentials"]}, "grant_types must be authorization_code"),
        ({"grant_types": ["refresh_token"]}, "grant_types must be authorization_code"),
        ({"response_types": ["token"]}, "response_types must be ['code']"),
        ({"token_endpoint_auth_method": "private_key_jwt"}, "private_key_jwt is not supported"),
        ({"redirect_uris": []}, "redirect_uris"),
        ({"scope": "mcp admin"}, "unknown scope 'admin'"),
    ],
)
def test_metadata_bastion_cannot_honour_is_invalid_client_metadata(
    gw: Bastion, metadata: dict[str, Any], description: str
) -> None:
    _refused(_register(gw, **metadata), "invalid_client_metadata", description)


def test_a_registration_without_redirect_uris_is_refused(gw: Bastion) -> None:
    response = gw.http.post("/oauth/register", json={"client_name": "No redirects", "redirect_uris": None})
    _refused(response, "invalid_redirect_uri", "redirect_uris is required")


def test_a_body_that_is_not_json_is_invalid_request(gw: Bastion) -> None:
    response = gw.http.post("/oauth/register", content=b"client_name=x", headers={"content-type": "text/plain"})
    _refused(response, "invalid_request", "must be a JSON object")


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("closed"), registration="off") as bastion:
        yield bastion


def test_with_registration_off_the_endpoint_is_403_and_not_advertised(closed: Bastion) -> None:
    response = _register(closed, token_endpoint_auth_method="none")
    assert response.status_code == 403
    assert response.json() == {
        "error": "access_denied",
        "error_description": "dynamic client registration is turned off on this server",
    }
    metadata = closed.http.get("/.well-known/oauth-authorization-server").json()
    assert "registration_endpoint" not in metadata
    assert "registration_endpoint" not in closed.http.get("/.well-known/openid-configuration").json()


@pytest.fixture(scope="module")
def allowlisted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    hosts = ["app.example.com"]
    with run_bastion(
        tmp_path_factory.mktemp("allowlist"), registration="allowlist", registration_redirect_hosts=hosts
    ) as bastion:
        yield bastion


@pytest.mark.parametrize("uri", ["https://app.example.com/callback", REDIRECT_URI, "http://[::1]:9000/cb"])
def test_the_allowlist_accepts_listed_hosts_and_loopback(allowlisted: Bastion, uri: str) -> None:
    response = _register(allowlisted, redirect_uris=[uri])
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("uris", "description"),
    [
        (
            ["https://evil.example/callback"],
            "redirect host evil.example is not on this server's registration allowlist",
        ),
        (["https://app.example.com/cb", "https://app.example.com.evil.example/cb"], "app.example.com.evil.example"),
        (["com.example.app:/callback"], "not on this server's registration allowlist"),
    ],
)
def test_the_allowlist_refuses_every_other_redirect(allowlisted: Bastion, uris: list[str], description: str) -> None:
    _refused(_register(allowlisted, redirect_uris=uris), "invalid_redirect_uri", description)
    assert "registration_endpoint" in allowlisted.http.get("/.well-known/oauth-authorization-server").json()
