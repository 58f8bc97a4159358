"""The official SDK's OAuth client, given only a virtual server's URL: discovery → registration →
sign-in and consent → tokens → tools/call → refresh."""

from __future__ import annotations

import time

import httpx
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

from tests.harness import ADMIN_PASSWORD, STDIO_INVENTORY, Bastion
from tests.oauth_browser import Browser, Redirect
from tests.oauth_storage import MemoryStorage

pytestmark = pytest.mark.anyio

REDIRECT_URI = "http://127.0.0.1:33418/callback"


class Person:
    """The user at the browser: signs in and allows whatever the client opens."""

    def __init__(self, browser: Browser, password: str = ADMIN_PASSWORD) -> None:
        self.browser = browser
        self.password = password
        self.redirect: Redirect | None = None
        self.visits = 0

    async def open(self, url: str) -> None:
        self.visits += 1
        self.redirect = await self.browser.authorize(url, "admin", self.password)

    async def callback(self) -> AuthorizationCodeResult:
        assert self.redirect is not None
        params = self.redirect.params
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))


def _publish_demo(bastion: Bastion) -> None:
    bastion.add_origin("inventory", command=STDIO_INVENTORY)
    bastion.publish_server("demo", {"origin": "inventory"})


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_sdk_oauth_client_discovers_registers_signs_in_calls_tools_and_refreshes(
    bastion: Bastion, mode: str
) -> None:
    _publish_demo(bastion)
    storage = MemoryStorage()
    browser = Browser(bastion.base_url)
    person = Person(browser)
    provider = OAuthClientProvider(
        server_url=bastion.mcp_url("demo"),
        client_metadata=OAuthClientMetadata(
            client_name="Inventory agent",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=person.open,
        callback_handler=person.callback,
    )
    http = create_mcp_http_client(auth=provider)
    try:
        async with (
            http,
            Client(streamable_http_client(bastion.mcp_url("demo"), http_client=http), mode=mode, cache=None) as client,
        ):
            result = await client.call_tool("get_order", {"order_id": "ORD-1001"})
            assert not result.is_error
            assert person.visits == 1
            first = storage.tokens
            assert first is not None and first.refresh_token and first.expires_in == 600
            assert storage.client is not None and storage.client.client_id

            # The client's clock passes the access token's expiry: it refreshes before the next call.
            provider.context.token_expiry_time = time.time() - 1
            result = await client.call_tool("list_stock", {})
            assert not result.is_error
            second = storage.tokens
            assert second is not None
            assert second.access_token != first.access_token and second.refresh_token != first.refresh_token
            assert person.visits == 1  # refreshed, not re-authorized
    finally:
        await browser.aclose()

    # Rotation: the refresh token used above is spent; replaying it revokes the whole family.
    async with httpx.AsyncClient(base_url=bastion.base_url) as raw:
        replay = await raw.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": first.refresh_token,
                "client_id": storage.client.client_id,
            },
        )
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
        assert "already used" in replay.json()["error_description"]
        refused = await raw.post(
            bastion.mcp_url("demo"),
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"authorization": f"Bearer {second.access_token}", "mcp-protocol-version": "2025-11-25"},
        )
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
