"""Client ID Metadata Documents fetched from a real HTTPS server on loopback, signed by a CA made per test."""

from __future__ import annotations

import collections
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from bastion.errors import InvalidClient, InvalidClientMetadata
from bastion.net import EgressPolicy
from bastion.oauth.client_metadata import (
    ClientMetadataDocument,
    ClientMetadataResolver,
    is_client_id_url,
    parse_client_metadata,
    redirect_uri_allowed,
)
from tests.tls import make_local_ca, serve

LOOPBACK = EgressPolicy(allow_cidrs=("127.0.0.0/8",))
JSON = {"Content-Type": "application/json"}


@dataclass
class Site:
    """What the document server serves, per path, and how often each path was fetched."""

    pages: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    hits: collections.Counter[str] = field(default_factory=collections.Counter)
    gate: anyio.Event | None = None  # when present, requests wait for it to be set before answering
    arrived: anyio.Event = field(default_factory=anyio.Event)  # set by the first request
    base: str = field(init=False)  # known once the server listens
    resolver: ClientMetadataResolver = field(init=False)

    def put(self, path: str, body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> str:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.pages[path] = (status, headers if headers is not None else JSON, raw)
        return self.base + path

    def put_document(self, path: str, headers: dict[str, str] | None = None, **overrides: Any) -> str:
        client_id = self.base + path
        return self.put(path, document(client_id, **overrides), headers=headers)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def document(url: str, /, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_id": url,
        "client_name": "Example MCP Client",
        "client_uri": "https://app.example.com",
        "redirect_uris": ["http://127.0.0.1:3000/callback", "https://app.example.com/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


@asynccontextmanager
async def document_server(
    tmp_path: Path, policy: EgressPolicy = LOOPBACK, clock: Clock | None = None, **options: Any
) -> AsyncIterator[Site]:
    """An HTTPS server for "localhost" on 127.0.0.1, and a resolver trusting its CA."""
    ca = make_local_ca()
    site = Site()

    async def handle(request: web.Request) -> web.Response:
        site.hits[request.path] += 1
        site.arrived.set()
        if site.gate is not None:
            await site.gate.wait()
        status, headers, body = site.pages.get(request.path, (404, {"Content-Type": "text/plain"}, b"not found"))
        return web.Response(status=status, headers=headers, body=body)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    async with serve(app, ca.server_context(tmp_path)) as port:
        site.base = f"https://localhost:{port}"
        site.resolver = ClientMetadataResolver(
            policy, ssl_context=ca.client_context(), clock=clock or Clock(), **options
        )
        yield site


@pytest.mark.anyio
async def test_a_good_document_resolves_and_is_cached_until_its_max_age_passes(tmp_path: Path) -> None:
    clock = Clock()
    async with document_server(tmp_path, clock=clock, min_ttl=0) as site:
        client_id = site.put_document("/client.json", headers={**JSON, "Cache-Control": "public, max-age=120"})
        first = await site.resolver.resolve(client_id)
        assert await site.resolver.resolve(client_id) == first
        assert site.hits["/client.json"] == 1
        clock.now += 121
        assert await site.resolver.resolve(client_id) == first
        assert site.hits["/client.json"] == 2
    assert first == ClientMetadataDocument(
        client_id=client_id,
        client_name="Example MCP Client",
        client_uri="https://app.example.com",
        redirect_uris=("http://127.0.0.1:3000/callback", "https://app.example.com/callback"),
        grant_types=("authorization_code", "refresh_token"),
        response_types=("code",),
        token_endpoint_auth_method="none",
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("cache_control", "cached_for"),
    [("no-store", 30), ("max-age=999999", 600), ("max-age=100", 100)],
)
async def test_the_cache_lifetime_is_clamped_to_the_configured_bounds(
    tmp_path: Path, cache_control: str, cached_for: int
) -> None:
    clock = Clock()
    async with document_server(tmp_path, clock=clock, min_ttl=30, max_ttl=600) as site:
        client_id = site.put_document("/c", headers={**JSON, "Cache-Control": cache_control, "Age": "0"})
        await site.resolver.resolve(client_id)
        clock.now += cached_for - 1
        await site.resolver.resolve(client_id)
        assert site.hits["/c"] == 1
        clock.now += 2
        await site.resolver.resolve(client_id)
        assert site.hits["/c"] == 2


@pytest.mark.anyio
async def test_no_store_means_every_resolve_fetches_when_no_floor_is_set(tmp_path: Path) -> None:
    async with document_server(tmp_path, min_ttl=0) as site:
        client_id = site.put_document("/c", headers={**JSON, "Cache-Control": "no-store"})
        await site.resolver.resolve(client_id)
        await site.resolver.resolve(client_id)
        assert site.hits["/c"] == 2


@pytest.mark.anyio
async def test_an_expires_header_sets_the_lifetime_relative_to_the_date_header(tmp_path: Path) -> None:
    clock = Clock()
    date = datetime(2030, 1, 1, tzinfo=UTC)
    headers = {**JSON, "Date": format_datetime(date, usegmt=True)}
    headers["Expires"] = format_datetime(date + timedelta(seconds=200), usegmt=True)
    async with document_server(tmp_path, clock=clock, min_ttl=0) as site:
        client_id = site.put_document("/c", headers=headers)
        await site.resolver.resolve(client_id)
        clock.now += 199
        await site.resolver.resolve(client_id)
        assert site.hits["/c"] == 1
        clock.now += 2
        await site.resolver.resolve(client_id)
        assert site.hits["/c"] == 2


@pytest.mark.anyio
async def test_concurrent_resolves_of_one_client_share_a_single_fetch(tmp_path: Path) -> None:
    async with document_server(tmp_path) as site:
        client_id = site.put_document("/c")
        site.gate = anyio.Event()
        results: list[ClientMetadataDocument] = []

        async def resolve() -> None:
            results.append(await site.resolver.resolve(client_id))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                for _ in range(3):
                    tasks.start_soon(resolve)
                await site.arrived.wait()  # the first fetch is held at the server...
                await anyio.wait_all_tasks_blocked()  # ...and the other resolves are waiting on it
                site.gate.set()
        assert len(results) == 3
        assert site.hits["/c"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("claimed", ["https://other.example/c", "{base}/c/", "{base}/C"])
async def test_a_document_whose_client_id_differs_from_its_url_is_refused(tmp_path: Path, claimed: str) -> None:
    async with document_server(tmp_path) as site:
        client_id = site.put_document("/c", client_id=claimed.format(base=site.base))
        with pytest.raises(InvalidClientMetadata, match="differs from the URL it was fetched from"):
            await site.resolver.resolve(client_id)
        with pytest.raises(InvalidClientMetadata, match="differs"):  # invalid documents are not cached
            await site.resolver.resolve(client_id)
        assert site.hits["/c"] == 2


@pytest.mark.parametrize(
    "client_id",
    [
        "http://localhost/client.json",
        "https://localhost",
        "https://localhost/",
        "https://localhost/?q=1",
        "https://localhost/client.json#frag",
        "https://user@localhost/client.json",
        "https://user:pw@localhost/client.json",
        "https://localhost/a/../client.json",
        "https://localhost/./client.json",
        "https://localhost/a/%2e%2e/client.json",
        "https://localhost/client json",
        "https:///client.json",
        "https://example.com:99999/client.json",
        "client-123",
    ],
)
@pytest.mark.anyio
async def test_client_ids_that_are_not_https_urls_with_a_path_are_refused_without_a_fetch(
    tmp_path: Path, client_id: str
) -> None:
    assert not is_client_id_url(client_id)
    async with document_server(tmp_path) as site:
        with pytest.raises(InvalidClient, match="not a client metadata document URL"):
            await site.resolver.resolve(client_id.replace("localhost", site.base.removeprefix("https://")))
        assert sum(site.hits.values()) == 0


@pytest.mark.parametrize(
    "client_id", ["https://app.example.com/client.json", "https://app.example.com:8443/c?v=1", "https://a.b/x/y/"]
)
def test_https_urls_with_a_path_port_or_query_are_client_id_urls(client_id: str) -> None:
    assert is_client_id_url(client_id)


@pytest.mark.anyio
async def test_a_document_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    async with document_server(tmp_path) as site:
        client_id = site.put_document("/c", client_name="x" * 6000)
        with pytest.raises(InvalidClientMetadata, match="larger than 5120 bytes"):
            await site.resolver.resolve(client_id)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("application/json", b"{not json", "is not JSON"),
        ("application/json; charset=utf-8", b'["a list"]', "is not a JSON object"),
        ("text/html", b"<html></html>", "not served as application/json"),
    ],
)
async def test_a_document_that_is_not_a_json_object_is_refused(
    tmp_path: Path, content_type: str, body: bytes, reason: str
) -> None:
    async with document_server(tmp_path) as site:
        client_id = site.put("/c", body, headers={"Content-Type": content_type})
        with pytest.raises(InvalidClientMetadata, match=reason):
            await site.resolver.resolve(client_id)


@pytest.mark.anyio
async def test_a_document_served_as_a_json_subtype_is_accepted(tmp_path: Path) -> None:
    async with document_server(tmp_path) as site:
        client_id = site.put_document("/c", headers={"Content-Type": "application/oauth-client+json"})
        assert (await site.resolver.resolve(client_id)).client_id == client_id


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"token_endpoint_auth_method": "client_secret_post"}, "client_secret_post' is not allowed"),
        ({"token_endpoint_auth_method": "client_secret_basic"}, "client_secret_basic' is not allowed"),
        ({"client_secret": "s3cret"}, "must not carry a client_secret"),
    ],
)
async def test_a_document_relying_on_a_shared_secret_is_refused(
    tmp_path: Path, overrides: dict[str, Any], reason: str
) -> None:
    async with document_server(tmp_path) as site:
        client_id = site.put_document("/c", **overrides)
        with pytest.raises(InvalidClientMetadata, match=reason) as refused:
            await site.resolver.resolve(client_id)
        assert "s3cret" not in refused.value.message


@pytest.mark.anyio
async def test_loopback_is_refused_when_the_policy_does_not_allow_it(tmp_path: Path) -> None:
    async with document_server(tmp_path, policy=EgressPolicy()) as site:
        client_id = site.put_document("/c")
        with pytest.raises(InvalidClient, match="not a public address") as refused:
            await site.resolver.resolve(client_id)
        assert "127.0.0.1" not in refused.value.message
        assert sum(site.hits.values()) == 0


@pytest.mark.anyio
async def test_a_missing_document_is_refused_and_the_error_is_not_cached(tmp_path: Path) -> None:
    async with document_server(tmp_path) as site:
        client_id = site.base + "/c"
        with pytest.raises(InvalidClient, match="answered HTTP 404, not 200"):
            await site.resolver.resolve(client_id)
        site.put_document("/c")
        assert (await site.resolver.resolve(client_id)).client_id == client_id


@pytest.mark.anyio
async def test_a_redirect_is_not_followed(tmp_path: Path) -> None:
    async with document_server(tmp_path) as site:
        site.put_document("/real")
        client_id = site.put("/c", b"", status=302, headers={"Location": site.base + "/real"})
        with pytest.raises(InvalidClient, match="answered with a redirect"):
            await site.resolver.resolve(client_id)
        assert site.hits["/real"] == 0


@pytest.mark.anyio
async def test_a_server_whose_certificate_is_not_trusted_is_refused(tmp_path: Path) -> None:
    async with document_server(tmp_path) as site:
        client_id = site.put_document("/c")
        untrusting = ClientMetadataResolver(LOOPBACK)  # the system trust store, which lacks the test CA
        with pytest.raises(InvalidClient, match="connection or TLS failure"):
            await untrusting.resolve(client_id)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"redirect_uris": None}, "redirect_uris is required"),
        ({"redirect_uris": []}, "non-empty list of strings"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "script scheme"),
        ({"redirect_uris": ["/relative/callback"]}, "must be absolute"),
        ({"redirect_uris": ["https://app.example.com/cb#frag"]}, "without a fragment"),
        ({"redirect_uris": ["http://app.example.com/cb"]}, "http on loopback"),
        ({"redirect_uris": ["myapp:cb"]}, "reverse-DNS private-use scheme"),
        ({"redirect_uris": ["about:blank"]}, "reverse-DNS private-use scheme"),
        ({"redirect_uris": ["http://trusted.example@127.0.0.1:8080/cb"]}, "a user name before its host"),
        ({"redirect_uris": ["https://claude.ai@evil.example/cb"]}, "a user name before its host"),
        # A host that would add directives to the pages' CSP, or read as another host on them.
        ({"redirect_uris": ["https://a.example; frame-ancestors https://a.example ;/cb"]}, "a space or a control"),
        ({"redirect_uris": ["https://evil.example\\.good.com/cb"]}, "a backslash"),
        ({"client_name": None}, "client_name must be a non-empty string"),
        ({"logo_uri": "http://app.example.com/logo.png"}, "logo_uri must be an absolute https URL"),
        ({"token_endpoint_auth_method": "private_key_jwt"}, "needs the client's public keys"),
        ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "private or symmetric key material"),
        ({"jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c"}]}}, "private or symmetric"),
        ({"grant_types": "authorization_code"}, "grant_types must be a non-empty list"),
    ],
)
def test_documents_missing_what_the_spec_requires_are_refused(overrides: dict[str, Any], reason: str) -> None:
    client_id = "https://app.example.com/client.json"
    with pytest.raises(InvalidClientMetadata, match=reason):
        parse_client_metadata(client_id, document(client_id, **overrides))


def test_https_loopback_http_and_reverse_dns_schemes_are_accepted_redirect_uris() -> None:
    client_id = "https://app.example.com/client.json"
    uris = ["https://app.example.com/cb", "http://127.0.0.1/cb", "http://[::1]:7000/cb", "com.example.app:/cb"]
    assert parse_client_metadata(client_id, document(client_id, redirect_uris=uris)).redirect_uris == tuple(uris)


def test_a_private_key_jwt_client_with_public_keys_is_accepted() -> None:
    client_id = "https://app.example.com/client.json"
    parsed = parse_client_metadata(
        client_id,
        document(client_id, token_endpoint_auth_method="private_key_jwt", jwks_uri="https://app.example.com/jwks"),
    )
    assert parsed.token_endpoint_auth_method == "private_key_jwt"
    assert parsed.jwks_uri == "https://app.example.com/jwks"


def test_redirect_uris_match_exactly_and_only_exactly() -> None:
    client_id = "https://app.example.com/client.json"
    parsed = parse_client_metadata(client_id, document(client_id))
    assert redirect_uri_allowed(parsed, "https://app.example.com/callback")
    assert redirect_uri_allowed(parsed, "http://127.0.0.1:3000/callback")
    for near_miss in (
        "https://app.example.com/callback/",
        "https://APP.example.com/callback",
        "https://app.example.com/callback?x=1",
        "http://127.0.0.1:3001/callback",
    ):
        assert not redirect_uri_allowed(parsed, near_miss)
