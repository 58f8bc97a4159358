"""Bastion as an OAuth client of an origin's authorization server, against a real Bastion as that server.

The Bastion started here plays the origin: its virtual server `demo` is the protected MCP
resource and its authorization server guards it. The person's part (sign-in, consent) is
driven with `Flow`; everything Bastion-the-client does goes through `bastion.oauth.downstream`.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from bastion.errors import BadRequest, InvalidGrant, UpstreamProtocolError
from bastion.net.egress import EgressPolicy, EgressRefused
from bastion.oauth import downstream, downstream_metadata
from bastion.oauth.downstream import (
    DownstreamClient,
    DownstreamGrantLost,
    DownstreamServer,
    DownstreamTokenError,
    DownstreamTokens,
    RegistrationNotOffered,
)
from bastion.oauth.pkce import verify
from tests.harness import Bastion, run_bastion
from tests.oauth.flows import REDIRECT_URI, Flow, mcp_request, publish_demo

pytestmark = pytest.mark.anyio

LOOPBACK = EgressPolicy(allow_cidrs=("127.0.0.0/8",))


@pytest.fixture(scope="module")
def origin_as(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("downstream")) as bastion:
        publish_demo(bastion, "demo")
        yield bastion


@pytest.fixture
async def flow(origin_as: Bastion) -> AsyncIterator[Flow]:
    async with Flow(origin_as) as person:
        yield person


async def _connect(origin_as: Bastion, flow: Flow) -> tuple[DownstreamServer, DownstreamClient, DownstreamTokens]:
    """The whole connection: discover, register, send the person, take the code, exchange it."""
    server = await downstream.discover(origin_as.mcp_url("demo"), egress=LOOPBACK)
    client = await downstream.register(server, REDIRECT_URI, "Bastion (downstream test)", egress=LOOPBACK)
    verifier, state = downstream.new_code_verifier(), secrets.token_urlsafe(16)
    url = downstream.authorization_url(
        server, client, REDIRECT_URI, state, downstream.code_challenge(verifier), scope="mcp"
    )
    redirect = await flow.authorize(url)
    assert redirect.location.startswith(REDIRECT_URI + "?"), redirect.location
    code = downstream.callback_code(server, redirect.params, state)
    tokens = await downstream.exchange_code(
        server, client, code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI, egress=LOOPBACK
    )
    return server, client, tokens


async def _tools(origin_as: Bastion, token: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await mcp_request(http, origin_as.mcp_url("demo"), token)


# --- discovery -----------------------------------------------------------------------------------


async def test_discovery_finds_the_authorization_server_and_its_endpoints(origin_as: Bastion) -> None:
    base = origin_as.base_url
    server = await downstream.discover(origin_as.mcp_url("demo"), egress=LOOPBACK)
    assert server == DownstreamServer(
        resource=f"{base}/servers/demo/mcp",
        issuer=base,
        authorization_endpoint=f"{base}/oauth/authorize",
        token_endpoint=f"{base}/oauth/token",
        registration_endpoint=f"{base}/oauth/register",
        revocation_endpoint=f"{base}/oauth/revoke",
        scopes_supported=server.scopes_supported,
        iss_parameter_supported=True,
    )
    assert "mcp" in server.scopes_supported


async def test_a_resource_without_metadata_is_refused(origin_as: Bastion) -> None:
    with pytest.raises(UpstreamProtocolError, match="no protected resource metadata"):
        await downstream.discover(origin_as.mcp_url("nowhere"), egress=LOOPBACK)


def test_the_well_known_segment_goes_before_the_path() -> None:
    assert (
        downstream_metadata.well_known_url("https://as.example/tenant1/", "/.well-known/oauth-authorization-server")
        == "https://as.example/.well-known/oauth-authorization-server/tenant1"
    )
    assert (
        downstream_metadata.well_known_url("https://api.example/servers/x/mcp", "/.well-known/oauth-protected-resource")
        == "https://api.example/.well-known/oauth-protected-resource/servers/x/mcp"
    )
    assert (
        downstream_metadata.well_known_url("https://as.example", "/.well-known/x") == "https://as.example/.well-known/x"
    )
    assert (
        downstream_metadata.root_well_known_url("https://api.example/servers/x/mcp", "/.well-known/y")
        == "https://api.example/.well-known/y"
    )


def _as_document(issuer: str, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "code_challenge_methods_supported": ["S256"],
    }
    return {k: v for k, v in {**document, **changes}.items() if v is not None}


def test_resource_metadata_for_another_resource_is_refused() -> None:
    resource = "https://api.example/mcp"
    good = {"resource": "HTTPS://API.example/mcp", "authorization_servers": ["https://as.example"]}
    assert downstream.parse_resource_metadata(resource, good) == ("https://as.example", ())
    for other in ("https://api.example/other", "https://evil.example/mcp", None):
        with pytest.raises(UpstreamProtocolError, match=r"another resource.*RFC 9728 §3.3"):
            downstream.parse_resource_metadata(resource, {**good, "resource": other})
    with pytest.raises(UpstreamProtocolError, match="no authorization server"):
        downstream.parse_resource_metadata(resource, {"resource": resource, "authorization_servers": []})
    with pytest.raises(UpstreamProtocolError, match="https"):
        downstream.parse_resource_metadata(resource, {"resource": resource, "authorization_servers": ["http://as.x"]})


def test_authorization_server_metadata_must_be_the_issuers_own_and_offer_s256() -> None:
    issuer, resource = "https://as.example/tenant", "https://api.example/mcp"
    server = downstream.parse_authorization_server_metadata(issuer, resource, _as_document(issuer), ("read",))
    assert (server.issuer, server.token_endpoint, server.registration_endpoint) == (
        issuer,
        f"{issuer}/token",
        None,
    )
    assert server.scopes_supported == ("read",)
    with pytest.raises(UpstreamProtocolError, match=r"another issuer.*RFC 8414 §3.3"):
        downstream.parse_authorization_server_metadata(issuer, resource, _as_document("https://evil.example"))
    with pytest.raises(UpstreamProtocolError, match="PKCE with S256"):
        downstream.parse_authorization_server_metadata(
            issuer, resource, _as_document(issuer, code_challenge_methods_supported=["plain"])
        )
    with pytest.raises(UpstreamProtocolError, match="PKCE with S256"):
        downstream.parse_authorization_server_metadata(
            issuer, resource, _as_document(issuer, code_challenge_methods_supported=None)
        )
    with pytest.raises(UpstreamProtocolError, match="token_endpoint is missing"):
        downstream.parse_authorization_server_metadata(issuer, resource, _as_document(issuer, token_endpoint=None))


# --- registration, authorization, tokens --------------------------------------------------------


async def test_registration_is_a_public_client_with_code_and_refresh(origin_as: Bastion) -> None:
    server = await downstream.discover(origin_as.mcp_url("demo"), egress=LOOPBACK)
    client = await downstream.register(server, REDIRECT_URI, "Bastion (downstream test)", egress=LOOPBACK)
    assert client.client_id and client.client_secret is None
    assert client.token_endpoint_auth_method == "none"
    assert client.redirect_uris == (REDIRECT_URI,)
    no_registration = dataclasses.replace(server, registration_endpoint=None)
    with pytest.raises(RegistrationNotOffered, match="configure the client_id"):
        await downstream.register(no_registration, REDIRECT_URI, "x", egress=LOOPBACK)


async def test_the_authorization_url_carries_pkce_and_the_resource(origin_as: Bastion) -> None:
    server = await downstream.discover(origin_as.mcp_url("demo"), egress=LOOPBACK)
    client = DownstreamClient("configured-client")
    verifier = downstream.new_code_verifier()
    challenge = downstream.code_challenge(verifier)
    verify(verifier, challenge)  # the server side's own check accepts the pair
    url = downstream.authorization_url(server, client, REDIRECT_URI, "st", challenge, scope="mcp")
    assert url.startswith(f"{origin_as.base_url}/oauth/authorize?")
    params = httpx.URL(url).params
    assert dict(params) == {
        "response_type": "code",
        "client_id": "configured-client",
        "redirect_uri": REDIRECT_URI,
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": origin_as.mcp_url("demo"),
        "scope": "mcp",
    }
    with pytest.raises(BadRequest, match="43-character base64url"):  # a bad challenge is refused
        downstream.authorization_url(server, client, REDIRECT_URI, "st", "too-short")


async def test_a_connected_users_token_works_on_the_origin(origin_as: Bastion, flow: Flow) -> None:
    before = time.time()
    _server, _client, tokens = await _connect(origin_as, flow)
    assert tokens.access_token.startswith("bst_at_") and tokens.refresh_token
    assert tokens.expires_at is not None and tokens.expires_at > before + 60
    assert tokens.scope == "mcp"
    assert tokens.access_token not in repr(tokens) and tokens.refresh_token not in repr(tokens)
    assert (await _tools(origin_as, "bst_at_not-a-token")).status_code == 401
    answer = await _tools(origin_as, tokens.access_token)
    assert answer.status_code == 200, answer.text
    names = {tool["name"] for tool in answer.json()["result"]["tools"]}
    assert "get_order" in names


async def test_refresh_rotates_and_a_replayed_refresh_token_loses_the_grant(origin_as: Bastion, flow: Flow) -> None:
    server, client, first = await _connect(origin_as, flow)
    assert first.refresh_token is not None
    second = await downstream.refresh(server, client, first.refresh_token, egress=LOOPBACK)
    assert second.refresh_token and second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert (await _tools(origin_as, second.access_token)).status_code == 200
    with pytest.raises(DownstreamGrantLost) as lost:
        await downstream.refresh(server, client, first.refresh_token, egress=LOOPBACK)
    assert lost.value.error == "invalid_grant"
    assert "invalid_grant" in lost.value.message and first.refresh_token not in lost.value.message
    # Reuse detection revoked the whole family: the rotated token is gone as well.
    with pytest.raises(DownstreamGrantLost):
        await downstream.refresh(server, client, second.refresh_token, egress=LOOPBACK)


async def test_a_refused_code_is_a_token_error_not_a_lost_grant(origin_as: Bastion, flow: Flow) -> None:
    server = await downstream.discover(origin_as.mcp_url("demo"), egress=LOOPBACK)
    client = await downstream.register(server, REDIRECT_URI, "Bastion (downstream test)", egress=LOOPBACK)
    verifier, state = downstream.new_code_verifier(), "state-1"
    url = downstream.authorization_url(server, client, REDIRECT_URI, state, downstream.code_challenge(verifier))
    redirect = await flow.authorize(url)
    code = downstream.callback_code(server, redirect.params, state)
    with pytest.raises(DownstreamTokenError) as refused:  # the wrong verifier: PKCE holds
        await downstream.exchange_code(
            server,
            client,
            code=code,
            code_verifier=downstream.new_code_verifier(),
            redirect_uri=REDIRECT_URI,
            egress=LOOPBACK,
        )
    assert type(refused.value) is DownstreamTokenError and refused.value.error == "invalid_grant"
    assert not isinstance(refused.value, InvalidGrant)  # the origin's refusal, not Bastion's client's


def test_the_callback_must_match_state_and_issuer() -> None:
    server = downstream.parse_authorization_server_metadata(
        "https://as.example",
        "https://api.example/mcp",
        _as_document("https://as.example", authorization_response_iss_parameter_supported=True),
    )
    good = {"code": "c", "state": "s", "iss": "https://as.example"}
    assert downstream.callback_code(server, good, "s") == "c"
    with pytest.raises(BadRequest, match="state"):
        downstream.callback_code(server, {**good, "state": "other"}, "s")
    with pytest.raises(BadRequest, match="RFC 9207"):
        downstream.callback_code(server, {**good, "iss": "https://evil.example"}, "s")
    with pytest.raises(BadRequest, match="RFC 9207"):
        downstream.callback_code(server, {"code": "c", "state": "s"}, "s")
    with pytest.raises(DownstreamTokenError, match=r"\(access_denied\)") as denied:
        downstream.callback_code(server, {"error": "access_denied", "state": "s", "iss": server.issuer}, "s")
    assert denied.value.error == "access_denied"


# --- egress -------------------------------------------------------------------------------------


async def test_metadata_addresses_and_unallowed_loopback_are_refused(origin_as: Bastion) -> None:
    with pytest.raises(EgressRefused) as metadata:
        await downstream.discover("https://169.254.169.254/mcp", egress=LOOPBACK)
    assert metadata.value.reason == "cloud metadata address"
    with pytest.raises(EgressRefused) as loopback:  # the default policy: Bastion's own network is off limits
        await downstream.discover(origin_as.mcp_url("demo"), egress=EgressPolicy())
    assert loopback.value.reason == "loopback address"
    server = await downstream.discover(origin_as.mcp_url("demo"), egress=LOOPBACK)
    with pytest.raises(EgressRefused):  # POSTs obey the policy too
        await downstream.register(server, REDIRECT_URI, "x", egress=EgressPolicy())
