"""Client ID Metadata Documents end to end: the SDK's client names itself by a URL and never registers.

The document is served over HTTPS on loopback with a certificate from a CA made for the
test; Bastion trusts that CA (`egress_ca_file`) and, in the permissive instance only, may
reach loopback at all (`egress_allow_cidrs`).
"""

from __future__ import annotations

import collections
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata
from sqlalchemy import func, select

from bastion.store.models import OAuthClient
from bastion.store.tenancy import SYSTEM
from tests.harness import Bastion, run_bastion
from tests.oauth.flows import REDIRECT_URI, Flow, Pkce, own_database, page_message, publish_demo
from tests.oauth_browser import Redirect
from tests.oauth_storage import MemoryStorage
from tests.tls import LocalCA, make_local_ca, serve

pytestmark = pytest.mark.anyio

CLIENT_NAME = "Metadata Document Agent"


@dataclass
class DocumentSite:
    base: str
    hits: collections.Counter[str] = field(default_factory=collections.Counter)
    document: dict[str, Any] = field(default_factory=dict)  # what it serves (a test may change it)

    @property
    def client_id(self) -> str:
        return f"{self.base}/oauth/client.json"


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    return make_local_ca()


def _trusting(tmp: Path, ca: LocalCA, **overrides: Any) -> Iterator[Bastion]:
    pem = tmp / "test-ca.pem"
    pem.write_bytes(ca.ca_pem)
    with run_bastion(tmp, egress_ca_file=pem, **overrides) as bastion:
        publish_demo(bastion, "demo")
        yield bastion


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, ca: LocalCA) -> Iterator[Bastion]:
    yield from _trusting(tmp_path_factory.mktemp("cimd"), ca, egress_allow_cidrs=["127.0.0.0/8"])


@pytest.fixture
def guarded(tmp_path: Path, ca: LocalCA) -> Iterator[Bastion]:
    """Default egress: loopback and private addresses are off limits (the harness allows loopback)."""
    yield from _trusting(tmp_path, ca, egress_allow_cidrs=[])


@pytest.fixture
async def site(tmp_path: Path, ca: LocalCA) -> AsyncIterator[DocumentSite]:
    """An HTTPS server for localhost publishing one client metadata document."""

    async def handle(request: web.Request) -> web.Response:
        documents.hits[request.path] += 1
        if request.path != "/oauth/client.json":
            return web.Response(status=404, text="not found")
        return web.Response(body=json.dumps(documents.document), content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    async with serve(app, ca.server_context(tmp_path)) as port:
        documents = DocumentSite(base=f"https://localhost:{port}")
        documents.document.update(
            client_id=documents.client_id,
            client_name=CLIENT_NAME,
            client_uri="https://agent.example",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        )
        yield documents


async def _registered_clients(gw: Bastion) -> int:
    async with own_database(gw) as db, db.session(SYSTEM) as session:
        return int(await session.scalar(select(func.count()).select_from(OAuthClient)) or 0)


async def test_the_sdk_client_authorizes_with_its_metadata_document_url_and_never_registers(
    gw: Bastion, site: DocumentSite
) -> None:
    storage = MemoryStorage()
    consent_pages: list[str] = []
    redirects: list[Redirect] = []
    async with Flow(gw) as person:

        async def open_in_browser(url: str) -> None:
            page = await person.consent_page(url.removeprefix(gw.base_url))
            assert page.status_code == 200, page.text
            consent_pages.append(page.text)
            redirects.append(await person.decide(page))

        async def callback() -> AuthorizationCodeResult:
            params = redirects[-1].params
            return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

        provider = OAuthClientProvider(
            server_url=gw.mcp_url("demo"),
            client_metadata=OAuthClientMetadata(
                client_name="ignored: the document speaks for the client",
                redirect_uris=[REDIRECT_URI],
                grant_types=["authorization_code", "refresh_token"],
                token_endpoint_auth_method="none",
            ),
            storage=storage,
            redirect_handler=open_in_browser,
            callback_handler=callback,
            client_metadata_url=site.client_id,
        )
        http = create_mcp_http_client(auth=provider)
        async with (
            http,
            Client(streamable_http_client(gw.mcp_url("demo"), http_client=http), mode="2026-07-28", cache=None) as mcp,
        ):
            result = await mcp.call_tool("get_order", {"order_id": "ORD-1001"})
            assert not result.is_error
    assert storage.client is not None and storage.client.client_id == site.client_id
    assert storage.tokens is not None and storage.tokens.refresh_token
    assert site.hits["/oauth/client.json"] >= 1
    assert await _registered_clients(gw) == 0  # /oauth/register was never used
    (consent,) = consent_pages
    assert CLIENT_NAME in consent and site.client_id in consent
    assert "unverified" not in consent  # the name comes from the client's own URL, not a registration


async def test_a_redirect_uri_missing_from_the_document_gets_an_error_page(gw: Bastion, site: DocumentSite) -> None:
    async with Flow(gw) as person:
        path = person.authorize_path(site.client_id, Pkce.new(), redirect_uri="https://agent.example/callback")
        page = await person.http.get(path)
    assert page.status_code == 400
    assert "location" not in page.headers
    assert "does not match any redirect URI registered" in page_message(page)
    assert site.hits["/oauth/client.json"] == 1


async def test_a_document_on_loopback_is_refused_under_the_default_egress_policy(
    guarded: Bastion, site: DocumentSite
) -> None:
    async with Flow(guarded) as person:
        page = await person.http.get(person.authorize_path(site.client_id, Pkce.new()))
        token = await person.http.post(
            "/oauth/token",
            data={"grant_type": "authorization_code", "code": "x", "client_id": site.client_id},
        )
    assert page.status_code == 401
    assert "location" not in page.headers
    assert f"client metadata document at {site.client_id} was not fetched" in page_message(page)
    assert "not a public address" in page_message(page)
    assert site.hits.total() == 0  # refused before connecting
    assert token.status_code == 401
    assert token.json()["error"] == "invalid_client"
    assert "not a public address" in token.json()["error_description"]


async def test_a_document_client_authenticating_by_private_key_jwt_is_refused_before_sign_in(
    gw: Bastion, site: DocumentSite
) -> None:
    """Bastion's token endpoint takes `none` only for these clients: the authorization step says so,
    instead of the token endpoint after the person has signed in and consented."""
    site.document.update(token_endpoint_auth_method="private_key_jwt", jwks_uri="https://agent.example/jwks")
    async with Flow(gw) as person:
        page = await person.http.get(person.authorize_path(site.client_id, Pkce.new()))
    assert page.status_code == 401 and "location" not in page.headers
    assert "token_endpoint_auth_method private_key_jwt is not supported here" in page_message(page)


POLICIES: dict[str, tuple[dict[str, Any], str, str]] = {
    "off": ({"registration": "off"}, REDIRECT_URI, "admits no client by its metadata document"),
    "allowlist": (
        {"registration": "allowlist", "registration_redirect_hosts": ["agent.example"]},
        "https://elsewhere.example/callback",
        "redirect host elsewhere.example is not on this server's registration allowlist",
    ),
}


@pytest.fixture(params=sorted(POLICIES))
def held(request: pytest.FixtureRequest, tmp_path: Path, ca: LocalCA) -> Iterator[tuple[Bastion, str, str, str]]:
    """A Bastion under one registration policy, the redirect URI it must refuse, and why."""
    overrides, redirect_uri, message = POLICIES[request.param]
    for bastion in _trusting(tmp_path, ca, egress_allow_cidrs=["127.0.0.0/8"], **overrides):
        yield bastion, request.param, redirect_uri, message


async def test_a_metadata_document_client_is_held_to_the_registration_policy(
    held: tuple[Bastion, str, str, str], site: DocumentSite
) -> None:
    """A document names a new client just as registration does: `off` admits none, and `allowlist`
    only redirect URIs on its hosts (both were bypassed by sending a document URL as client_id)."""
    bastion, policy, redirect_uri, message = held
    site.document["redirect_uris"] = [REDIRECT_URI, "https://agent.example/callback", redirect_uri]
    async with Flow(bastion) as person:
        page = await person.http.get(person.authorize_path(site.client_id, Pkce.new(), redirect_uri=redirect_uri))
        assert page.status_code == 401 and "location" not in page.headers
    # Under the allowlist, loopback and the listed host, before it in the document, were let through.
    assert message in page_message(page)
    if policy == "off":  # not even fetched, and not advertised
        assert site.hits.total() == 0
        metadata = bastion.http.get("/.well-known/oauth-authorization-server").json()
        assert not metadata.get("client_id_metadata_document_supported")


async def test_the_metadata_advertises_client_id_metadata_documents(gw: Bastion) -> None:
    async with httpx.AsyncClient(base_url=gw.base_url) as http:
        metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["client_id_metadata_document_supported"] is True
