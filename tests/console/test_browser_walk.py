"""A new administrator's first session with the console, in a real browser, end to end.

Log in, register an origin, approve it, compose and publish a virtual server,
create a token, call a tool with the official MCP SDK client, see the call in
the audit timeline and on the dashboard, revoke the token (and see the client
refused). A member without admin rights sees only their sections and gets 403
elsewhere. Every page is screenshotted and watched for CSP violations.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.browser import Watched, browser_page
from tests.harness import ADMIN_PASSWORD, Bastion, eventually, origin_process, run_bastion

pytestmark = pytest.mark.anyio


@pytest.fixture
def inventory() -> Iterator[str]:
    with origin_process() as url:
        yield url


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Bastion]:
    with run_bastion(tmp_path, admin_ui=True) as running:
        yield running


async def _sign_in(watched: Watched, base: str, username: str, password: str) -> None:
    page = watched.page
    await page.goto(f"{base}/admin")
    assert page.url.startswith(f"{base}/admin/login?next=")  # not signed in: to the sign-in form
    await watched.shot("sign-in")
    await page.get_by_label("User name").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_load_state()


async def test_a_new_admin_walks_from_sign_in_to_a_revoked_token(inventory: str, gateway: Bastion) -> None:
    # The origin first, so Bastion (and its stream to the origin) stops before the origin does.
    base = gateway.base_url
    async with browser_page("admin-walk") as watched:
        page = watched.page
        await _sign_in(watched, base, gateway.settings.admin_user, ADMIN_PASSWORD)
        assert page.url == f"{base}/admin"
        await watched.shot("dashboard-empty")

        # Register the origin and approve the connector request.
        await page.get_by_role("link", name="Origins").click()
        await page.get_by_label("Name", exact=True).fill("inventory")
        await page.locator("select[name=transport]").select_option("http")
        await page.get_by_label("URL (http transport)").fill(inventory)
        await watched.shot("origins-register")
        await page.get_by_role("button", name="Register origin").click()
        await page.wait_for_url(re.compile(r".*/admin/origins/\w+.*"))
        await watched.shot("origin-pending")
        await page.get_by_role("button", name="Approve").click()
        await page.wait_for_load_state()
        assert await page.get_by_text("list_stock").count() >= 1  # discovered tools are shown
        await watched.shot("origin-approved")

        # Compose and publish a virtual server.
        await page.get_by_role("link", name="Virtual servers").click()
        await page.get_by_label("Slug").fill("shop")
        await page.get_by_label("Title").fill("Shop floor")
        await page.get_by_role("button", name="Create server").click()
        await page.wait_for_url(re.compile(r".*/admin/servers/\w+.*"))
        await page.locator("select[name=origin]").select_option(label="inventory")
        await page.get_by_role("button", name="Add items").click()
        await page.wait_for_load_state()
        await page.get_by_role("button", name="Publish", exact=True).click()
        await page.wait_for_load_state()
        config = await page.locator("#client-config").inner_text()
        assert gateway.mcp_url("shop") in config
        await watched.shot("server-published")

        # A token for it, shown once.
        await page.get_by_role("link", name="API tokens").click()
        await page.get_by_label("Name").fill("laptop agent")
        await page.get_by_label("shop").check()
        await page.get_by_role("button", name="Create token").click()
        await page.wait_for_load_state()
        token = (await page.locator("#new-token").inner_text()).strip()
        assert token.startswith("bst_")
        await watched.shot("token-created")

        # The agent calls a tool with that token (the official SDK client).
        async with gateway.client("shop", token) as client:
            result = await client.call_tool("list_stock", {})
            assert not result.is_error

        # The call in the audit trail, followed as a timeline.
        async def recorded() -> bool:
            await page.goto(f"{base}/admin/audit?target=list_stock")
            return await page.locator("a[href^='/admin/audit/trace/']").count() > 0

        await eventually(recorded)
        await watched.shot("audit-search")
        await page.locator("a[href^='/admin/audit/trace/']").first.click()
        await page.wait_for_load_state()
        timeline = page.locator("ol.timeline li")
        assert await timeline.count() >= 2  # the inbound request and the call to the origin
        assert "list_stock" in await page.locator("ol.timeline").inner_text()
        await watched.shot("audit-timeline")

        # The dashboard counts it.
        await page.get_by_role("link", name="Dashboard").click()
        assert "list_stock" in await page.locator("#top-tools").inner_text()
        assert int(await page.locator("#stat-requests b").inner_text()) >= 1
        await watched.shot("dashboard")

        # Revoke the token: the agent's next request fails.
        await page.get_by_role("link", name="API tokens").click()
        row = page.locator("tr", has_text="laptop agent")
        await row.get_by_role("button", name="Revoke").click()
        await page.wait_for_load_state()
        assert await page.locator("tr", has_text="laptop agent").get_by_text("revoked").count() == 1
        await watched.shot("token-revoked")
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        refused = gateway.http.post(
            gateway.mcp_url("shop"),
            json=ping,
            headers={"authorization": f"Bearer {token}", "accept": "application/json"},
        )
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")

        # The rest of the console, for the record.
        for name, path in (("users", "/admin/users"), ("clients", "/admin/clients"), ("policies", "/admin/policies")):
            await page.goto(base + path)
            await watched.shot(name)
        assert watched.problems == []  # no CSP violation, no script error on any page
    assert len(watched.shots) >= 12


async def test_a_member_sees_only_their_sections_and_gets_403_on_admin_pages(gateway: Bastion) -> None:
    password = "a long enough member password 7"
    gateway.ok("POST", "/api/users", json={"username": "mia", "password": password, "roles": ["member"]})
    base = gateway.base_url
    async with browser_page("member") as watched:
        page = watched.page
        await _sign_in(watched, base, "mia", password)
        sections = await page.locator("nav.sidebar li a").all_inner_texts()
        assert sections == ["API tokens", "My account"]
        await watched.shot("member-landing")
        for path in ("/admin/origins", "/admin/servers", "/admin/users", "/admin/audit", "/admin/policies"):
            response = await page.goto(base + path)
            assert response is not None and response.status == 403, path
            assert "permission" in await page.locator("p.error").inner_text()
        await watched.shot("member-forbidden")
        assert watched.problems == []
