"""Enterprise-Managed Authorization: ID-JAGs from a trusted IdP over the RFC 7523 jwt-bearer grant.

The "IdP" is a `KeyRing` whose JWK Set a real loopback HTTP server publishes; Bastion fetches it
through its egress policy (loopback allowlisted for the test) and is told to trust that issuer.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from mcp import Client
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from bastion.oauth.keys import KeyRing
from tests.harness import Bastion, run_bastion
from tests.oauth.flows import mcp_request, publish_demo
from tests.oauth_storage import MemoryStorage

pytestmark = pytest.mark.anyio

IDP = "https://idp.example.test"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ID_JAG = "oauth-id-jag+jwt"
ALICE = "alice@example.com"


def _serve(document: dict[str, Any]) -> tuple[ThreadingHTTPServer, threading.Thread]:
    body = json.dumps(document).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # the base class's signature: quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="idp-jwks", daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="module")
def idp() -> KeyRing:
    return KeyRing.fresh(time.time())


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, idp: KeyRing) -> Iterator[Bastion]:
    jwks, thread = _serve(idp.jwks())
    overrides = {
        "enterprise_idps": {IDP: f"http://127.0.0.1:{jwks.server_address[1]}/jwks.json"},
        "egress_allow_cidrs": ["127.0.0.1/32"],  # the test IdP publishes its keys on loopback
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8192,
        "rate_limit_token": "10000/minute",
    }
    try:
        with run_bastion(tmp_path_factory.mktemp("enterprise"), **overrides) as bastion:
            publish_demo(bastion, "demo", "other")
            bastion.ok("POST", "/api/users", json={"username": ALICE, "password": "alice's long passphrase"})
            yield bastion
    finally:
        jwks.shutdown()
        jwks.server_close()
        thread.join(timeout=5)


@pytest.fixture
async def http(gw: Bastion) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def app(gw: Bastion) -> dict[str, Any]:
    """The MCP client, registered with Bastion for ID-JAGs and allowed to reach "demo"."""
    body = {
        "name": "enterprise agent",
        "servers": ["demo"],
        "grant_types": [JWT_BEARER],
        "token_endpoint_auth_method": "client_secret_post",
    }
    created: dict[str, Any] = gw.ok("POST", "/api/oauth/clients", json=body)
    return created


def claims_for(gw: Bastion, client: dict[str, Any], **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": IDP,
        "sub": "00u1a2b3c4",
        "email": ALICE,
        "aud": gw.base_url,
        "resource": gw.mcp_url("demo"),
        "client_id": client["client_id"],
        "jti": secrets.token_hex(8),
        "iat": now,
        "exp": now + 300,
        "scope": "mcp",
        **changes,
    }
    return {name: value for name, value in claims.items() if value is not None}


def id_jag(idp: KeyRing, gw: Bastion, client: dict[str, Any], **changes: Any) -> str:
    return idp.sign(claims_for(gw, client, **changes), typ=ID_JAG)


async def present(http: httpx.AsyncClient, client: dict[str, Any], assertion: str, **form: str) -> httpx.Response:
    body = {
        "grant_type": JWT_BEARER,
        "assertion": assertion,
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
        **form,
    }
    return await http.post("/oauth/token", data=body)


def assert_refused(response: httpx.Response, words: str, error: str = "invalid_grant") -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert words in response.json()["error_description"], response.json()


async def test_the_sdk_identity_assertion_provider_gets_a_token_for_the_asserted_user_and_calls_tools(
    gw: Bastion, idp: KeyRing, app: dict[str, Any]
) -> None:
    asked: list[tuple[str, str]] = []

    async def from_the_idp(audience: str, resource: str) -> str:
        asked.append((audience, resource))
        return id_jag(idp, gw, app, aud=audience, resource=resource)

    storage = MemoryStorage()
    provider = IdentityAssertionOAuthProvider(
        server_url=gw.mcp_url("demo"),
        storage=storage,
        client_id=app["client_id"],
        client_secret=app["client_secret"],
        issuer=gw.base_url,
        assertion_provider=from_the_idp,
    )
    async with (
        create_mcp_http_client(auth=provider) as http,
        Client(streamable_http_client(gw.mcp_url("demo"), http_client=http), mode="2026-07-28", cache=None) as mcp,
    ):
        result = await mcp.call_tool("get_order", {"order_id": "ORD-1001"})
        assert not result.is_error
    assert asked == [(gw.base_url, gw.mcp_url("demo"))]
    assert storage.tokens is not None and storage.tokens.refresh_token is None
    introspector = gw.ok("POST", "/api/oauth/clients", json={"name": "rs", "servers": ["demo"]})
    async with httpx.AsyncClient(base_url=gw.base_url) as raw:
        described = await raw.post(
            "/oauth/introspect",
            data={"token": storage.tokens.access_token},
            auth=(introspector["client_id"], introspector["client_secret"]),
        )
    assert described.json()["username"] == ALICE and described.json()["client_id"] == app["client_id"]


def test_metadata_advertises_the_id_jag_grant_profile(gw: Bastion) -> None:
    document = gw.http.get("/.well-known/oauth-authorization-server").json()
    assert document["authorization_grant_profiles_supported"] == ["urn:ietf:params:oauth:grant-profile:id-jag"]
    assert JWT_BEARER in document["grant_types_supported"]


async def test_the_token_is_bound_to_the_asserted_resource(
    gw: Bastion, idp: KeyRing, app: dict[str, Any], http: httpx.AsyncClient
) -> None:
    response = await present(http, app, id_jag(idp, gw, app))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "mcp" and "refresh_token" not in body
    assert (await mcp_request(http, gw.mcp_url("demo"), body["access_token"])).status_code == 200
    assert (await mcp_request(http, gw.mcp_url("other"), body["access_token"])).status_code == 401


async def test_a_user_is_found_by_sub_when_no_email_matches(
    gw: Bastion, idp: KeyRing, app: dict[str, Any], http: httpx.AsyncClient
) -> None:
    response = await present(http, app, id_jag(idp, gw, app, email=None, sub=ALICE))
    assert response.status_code == 200, response.text


async def test_scopes_are_the_intersection_of_the_request_and_the_assertion(
    gw: Bastion, idp: KeyRing, app: dict[str, Any], http: httpx.AsyncClient
) -> None:
    read_only = await present(http, app, id_jag(idp, gw, app, scope="mcp:read"), scope="mcp")
    assert read_only.json()["scope"] == "mcp:read"
    refused = await present(http, app, id_jag(idp, gw, app, scope="mcp:read"), scope="mcp:write")
    assert_refused(refused, "none of the requested scopes", error="invalid_scope")
    foreign = await present(http, app, id_jag(idp, gw, app, scope="calendar.read"))
    assert_refused(foreign, "grants none of this server's scopes")


async def test_an_unsigned_assertion_is_refused(gw: Bastion, app: dict[str, Any], http: httpx.AsyncClient) -> None:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    unsigned = f"{part({'alg': 'none', 'typ': ID_JAG})}.{part(claims_for(gw, app))}."
    assert_refused(await present(http, app, unsigned), "Unsigned tokens (alg none) are refused")


async def test_a_forged_signature_is_refused(
    gw: Bastion, idp: KeyRing, app: dict[str, Any], http: httpx.AsyncClient
) -> None:
    forger = ECKey.generate_key("P-256", private=True)
    header = {"alg": "ES256", "kid": idp.active.kid, "typ": ID_JAG}  # claims to be the IdP's key
    forged = jwt.encode(header, claims_for(gw, app), forger, algorithms=["ES256"])
    assert_refused(await present(http, app, forged), "signature does not verify")
    stranger = KeyRing.fresh(time.time()).sign(claims_for(gw, app), typ=ID_JAG)
    assert_refused(await present(http, app, stranger), "No trusted signing key matches the token's kid")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"iss": "https://evil.example"}, "issuer (iss) is not a trusted enterprise identity provider"),
        ({"exp": int(time.time()) - 600, "iat": int(time.time()) - 900}, "The token has expired"),
        ({"aud": "https://another-as.example"}, "audience does not include this service"),
        ({"jti": None}, "lacks required claims: jti"),
        ({"client_id": "someone-else"}, "issued to another client"),
        ({"email": "mallory@example.com", "sub": "mallory"}, "no Bastion user matches"),
        # the IdP did not check the address: it names nobody (the sub here is the IdP's own id)
        ({"email_verified": False}, "no Bastion user matches"),
        ({"email_verified": "false"}, "no Bastion user matches"),  # as some IdPs spell it
        ({"resource": "https://elsewhere.example/mcp"}, "is not a published server here"),
        ({"scope": ["mcp"]}, "scope claim must be a space-delimited string"),
    ],
)
async def test_an_assertion_breaking_a_rule_is_invalid_grant_saying_which(
    gw: Bastion, idp: KeyRing, app: dict[str, Any], http: httpx.AsyncClient, changes: dict[str, Any], words: str
) -> None:
    assert_refused(await present(http, app, id_jag(idp, gw, app, **changes)), words)


async def test_the_typ_header_must_name_an_id_jag(
    gw: Bastion, idp: KeyRing, app: dict[str, Any], http: httpx.AsyncClient
) -> None:
    plain = idp.sign(claims_for(gw, app), typ="JWT")
    assert_refused(await present(http, app, plain), "typ header is not 'oauth-id-jag+jwt'")


async def test_an_assertion_is_used_once(
    gw: Bastion, idp: KeyRing, app: dict[str, Any], http: httpx.AsyncClient
) -> None:
    assertion = id_jag(idp, gw, app)
    assert (await present(http, app, assertion)).status_code == 200
    assert_refused(await present(http, app, assertion), "already used")


async def test_the_resource_must_be_one_the_client_may_reach_and_agree_with_the_assertion(
    gw: Bastion, idp: KeyRing, app: dict[str, Any], http: httpx.AsyncClient
) -> None:
    other = id_jag(idp, gw, app, resource=gw.mcp_url("other"))
    assert_refused(await present(http, app, other), "not allowed to reach", error="invalid_target")
    disagree = await present(http, app, id_jag(idp, gw, app), resource=gw.mcp_url("other"))
    assert_refused(disagree, "differs from the resource claim", error="invalid_target")
    # No resource claim: the request's resource parameter names the server.
    unclaimed = await present(http, app, id_jag(idp, gw, app, resource=None), resource=gw.mcp_url("demo"))
    assert unclaimed.status_code == 200, unclaimed.text


async def test_a_request_without_an_assertion_or_from_a_client_without_the_grant_is_refused(
    gw: Bastion, idp: KeyRing, app: dict[str, Any], http: httpx.AsyncClient
) -> None:
    missing = await http.post(
        "/oauth/token",
        data={"grant_type": JWT_BEARER, "client_id": app["client_id"], "client_secret": app["client_secret"]},
    )
    assert_refused(missing, "assertion is required", error="invalid_request")
    plain = gw.ok("POST", "/api/oauth/clients", json={"name": "cc", "servers": ["demo"]})
    refused = await http.post(
        "/oauth/token",
        data={"grant_type": JWT_BEARER, "assertion": id_jag(idp, gw, plain)},
        auth=(plain["client_id"], plain["client_secret"]),
    )
    assert_refused(refused, "not registered for the " + JWT_BEARER, error="unauthorized_client")
