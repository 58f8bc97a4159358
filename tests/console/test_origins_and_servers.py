"""The console's origins and virtual-server pages, against a real Bastion and real origins over HTTP:
register and review a connector request, quarantined items' diffs and their re-approval, compose,
enable/disable/alias items, publish, the client configuration, and what an auditor may not do."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import anyio
import httpx

from tests.console.client import Console, inline_errors
from tests.harness import Bastion, origin_process

AUDITOR_PASSWORD = "an-auditor-reads-but-never-writes-77"


def _location(response: httpx.Response) -> str:
    assert response.status_code == 303, (response.status_code, response.text)
    return response.headers["location"]


def _origin(gateway: Bastion, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(o for o in gateway.ok("GET", "/api/origins") if o["name"] == name)
    detail: dict[str, Any] = gateway.ok("GET", f"/api/origins/{found['id']}")
    return detail


def _tool(origin: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in origin["items"] if i["kind"] == "tool" and i["name"] == name)


def _buttons(page: str) -> set[str]:
    return set(re.findall(r"<button[^>]*>([^<]+)</button>", page))


def _forms(page: str) -> set[str]:
    return set(re.findall(r'<form method="post" action="([^"]+)"', page)) - {"/admin/logout"}


def test_an_origin_registered_in_the_console_is_reviewed_and_shows_its_tools(
    console: Console, gateway: Bastion
) -> None:
    listing = console.get("/admin/origins")
    assert listing.status_code == 200 and "Register origin" in _buttons(listing.text)
    assert (
        "no-store" in listing.headers["cache-control"]
        and "script-src 'self'" in listing.headers["content-security-policy"]
    )
    with origin_process() as url:
        registered = console.post(
            "/admin/origins",
            {"name": "inventory", "transport": "http", "url": url, "visibility": "tenant", "timeout_seconds": "20"},
        )
        target = _location(registered)
        origin = _origin(gateway, "inventory")
        assert target == f"/admin/origins/{origin['id']}?notice=registered"
        # Registered by a person, not the operator: a connector request, discovered for its reviewer.
        assert origin["status"] == "pending" and origin["url"] == url and origin["timeout_seconds"] == 20
        pending = console.get(target).text
        assert "is registered" in pending and '<span class="badge warn">pending</span>' in pending
        assert "list_stock" in pending and "awaiting review" in pending
        # The reviewer sees what approving pins: each definition whole (its parameters' descriptions
        # too, where words aimed at a model hide) and what each tool says it does.
        assert pending.count("Full definition (what approving pins)") == len(origin["items"])
        assert "&#34;inputSchema&#34;" in pending or '"inputSchema"' in pending
        assert "says: read-only" in pending and "may destroy" in pending
        assert {"Approve", "Reject", "Refresh discovery", "Delete origin"} <= _buttons(pending)
        # The form names the catalog it shows: an approval of another one is refused, and says why.
        assert f'name="catalog_digest" value="{origin["catalog_digest"]}"' in pending
        other = console.post(
            f"/admin/origins/{origin['id']}/review", {"decision": "approve", "catalog_digest": "0" * 64}
        )
        assert other.status_code == 409 and "other items than the ones you reviewed" in other.text
        assert _origin(gateway, "inventory")["status"] == "pending"

        approved = console.post(
            f"/admin/origins/{origin['id']}/review",
            {"decision": "approve", "note": "inventory team asked", "catalog_digest": origin["catalog_digest"]},
        )
        assert _location(approved) == f"/admin/origins/{origin['id']}?notice=approved"
        stored = _origin(gateway, "inventory")
        assert stored["status"] == "approved" and stored["review_note"] == "inventory team asked"
        assert stored["reviewed_by"] == gateway.settings.admin_user
        detail = console.get(f"/admin/origins/{origin['id']}").text
        assert '<span class="badge ok">approved</span>' in detail and "inventory team asked" in detail
        for tool in ("list_stock", "get_order", "create_reorder", "refund_order"):
            assert f'<span class="mono">{tool}</span>' in detail
        assert "Approve" not in _buttons(detail) and "Reject" in _buttons(detail)
        assert "quarantined" not in detail

        refreshed = console.post(f"/admin/origins/{origin['id']}/refresh", follow_redirects=True)
        assert refreshed.status_code == 200 and "Discovery ran again" in refreshed.text
        assert _origin(gateway, "inventory")["discovered_at"] != stored["discovered_at"]

        rows = console.get("/admin/origins").text
        assert f'href="/admin/origins/{origin["id"]}">inventory</a>' in rows and "badge ok" in rows

        rejected = console.post(f"/admin/origins/{origin['id']}/review", {"decision": "reject"}, follow_redirects=True)
        assert rejected.status_code == 200 and '<span class="badge bad">rejected</span>' in rejected.text
        assert "Refresh discovery" not in _buttons(rejected.text)
        assert _origin(gateway, "inventory")["status"] == "rejected"
        assert console.post(f"/admin/origins/{origin['id']}/review", {"decision": "maybe"}).status_code == 422

        deleted = console.post(f"/admin/origins/{origin['id']}/delete", follow_redirects=True)
        assert deleted.status_code == 200 and "The origin is deleted" in deleted.text
        assert gateway.ok("GET", "/api/origins") == []
        assert console.get(f"/admin/origins/{origin['id']}").status_code == 404


def test_an_invalid_registration_is_refused_inline_and_nothing_is_written(console: Console, gateway: Bastion) -> None:
    answer = console.post(
        "/admin/origins",
        {"name": "Not A Slug", "transport": "http", "url": "", "timeout_seconds": "soon", "visibility": "tenant"},
    )
    assert answer.status_code == 422
    errors = inline_errors(answer.text)
    assert len(errors) == 3, errors
    assert any("needs url" in e for e in errors) and any("valid number" in e for e in errors)
    assert 'value="Not A Slug"' in answer.text  # what was typed is kept
    stdio = console.post("/admin/origins", {"name": "tool", "transport": "stdio", "command": "\n\n"})
    assert stdio.status_code == 422 and "a stdio origin needs command" in inline_errors(stdio.text)
    team = console.post(
        "/admin/origins", {"name": "t", "transport": "http", "url": "http://127.0.0.1:9/mcp", "visibility": "team"}
    )
    assert team.status_code == 422 and "team visibility needs at least one team" in inline_errors(team.text)
    # A command outside the stdio allowlist is refused before anything is stored.
    foreign = console.post("/admin/origins", {"name": "shell", "transport": "stdio", "command": "/bin/sh\n-c\nid"})
    assert foreign.status_code == 422 and inline_errors(foreign.text)
    assert "/bin/sh\n-c\nid</textarea>" in foreign.text
    assert gateway.ok("GET", "/api/origins") == []


def test_a_server_is_composed_tuned_published_and_configured_from_the_console(
    console: Console, gateway: Bastion
) -> None:
    with origin_process() as url:
        origin = gateway.add_origin("inventory", url=url)
        listing = console.get("/admin/servers")
        assert listing.status_code == 200 and "Create server" in _buttons(listing.text)
        bad = console.post("/admin/servers", {"slug": "Sales Team", "title": "x" * 201, "visibility": "tenant"})
        assert bad.status_code == 422 and len(inline_errors(bad.text)) == 2
        assert gateway.ok("GET", "/api/servers") == []

        created = console.post(
            "/admin/servers",
            {"slug": "sales", "title": "Sales", "description": "for the sales desk", "visibility": "tenant"},
        )
        server_id = gateway.ok("GET", "/api/servers")[0]["id"]
        assert _location(created) == f"/admin/servers/{server_id}?notice=created"
        page = console.get(f"/admin/servers/{server_id}").text
        assert f'<option value="{origin["id"]}">inventory</option>' in page
        assert {"Add items", "Publish", "Delete server", "Copy configuration"} <= _buttons(page)

        unknown = console.post(
            f"/admin/servers/{server_id}/compose", {"origin": origin["id"], "items": "list_stock\nno_such_tool"}
        )
        assert unknown.status_code == 422 and any("no_such_tool" in e for e in inline_errors(unknown.text))
        assert gateway.ok("GET", f"/api/servers/{server_id}")["items"] == []

        composed = console.post(
            f"/admin/servers/{server_id}/compose",
            {"origin": origin["id"], "prefix": "inv_", "items": "list_stock\n\nget_order\n"},
        )
        assert _location(composed) == f"/admin/servers/{server_id}?notice=composed"
        items = {i["name"]: i for i in gateway.ok("GET", f"/api/servers/{server_id}")["items"]}
        assert {n: i["exposed_name"] for n, i in items.items()} == {
            "list_stock": "inv_list_stock",
            "get_order": "inv_get_order",
        }
        page = console.get(f"/admin/servers/{server_id}").text
        assert (
            '<td class="mono">inv_list_stock</td>' in page
            and f'href="/admin/origins/{origin["id"]}">inventory</a>' in page
        )

        stock = items["list_stock"]["id"]
        disabled = console.post(
            f"/admin/servers/{server_id}/items/{stock}", {"enabled": "false"}, follow_redirects=True
        )
        assert disabled.status_code == 200 and "The item is disabled" in disabled.text
        assert "Enable" in _buttons(disabled.text) and '<span class="badge warn">disabled</span>' in disabled.text
        after = {i["name"]: i for i in gateway.ok("GET", f"/api/servers/{server_id}")["items"]}
        assert after["list_stock"]["enabled"] is False and after["get_order"]["enabled"] is True

        wrong = console.post(f"/admin/servers/{server_id}/items/{stock}", {"alias": "stock levels!"})
        assert wrong.status_code == 422 and len(inline_errors(wrong.text)) == 1
        aliased = console.post(f"/admin/servers/{server_id}/items/{stock}", {"alias": "stock_levels"})
        assert _location(aliased) == f"/admin/servers/{server_id}?notice=aliased"
        enabled = console.post(f"/admin/servers/{server_id}/items/{stock}", {"enabled": "true"})
        assert _location(enabled).endswith("notice=item_enabled")
        after = {i["name"]: i for i in gateway.ok("GET", f"/api/servers/{server_id}")["items"]}
        assert after["list_stock"]["exposed_name"] == "stock_levels" and after["list_stock"]["enabled"] is True

        published = console.post(f"/admin/servers/{server_id}/publish", follow_redirects=True)
        assert published.status_code == 200 and "Unpublish" in _buttons(published.text)
        assert gateway.ok("GET", f"/api/servers/{server_id}")["published"] is True
        assert '<span class="badge ok">published</span>' in console.get("/admin/servers").text

        # The configuration to copy is valid JSON naming the server's real MCP URL.
        config_html = published.text.split('<pre id="client-config">', 1)[1].split("</pre>", 1)[0]
        config = json.loads(html.unescape(config_html))
        assert config == {
            "mcpServers": {
                "sales": {
                    "type": "streamable-http",
                    "url": gateway.mcp_url("sales"),
                    "headers": {"Authorization": "Bearer <your token>"},
                }
            }
        }
        assert gateway.ok("GET", f"/api/servers/{server_id}")["mcp_url"] == gateway.mcp_url("sales")
        assert 'data-copy="client-config"' in published.text and 'href="/admin/tokens"' in published.text

        unpublished = console.post(f"/admin/servers/{server_id}/unpublish", follow_redirects=True)
        assert unpublished.status_code == 200 and "Publish" in _buttons(unpublished.text)
        assert gateway.ok("GET", f"/api/servers/{server_id}")["published"] is False

        deleted = console.post(f"/admin/servers/{server_id}/delete", follow_redirects=True)
        assert deleted.status_code == 200 and "The virtual server is deleted" in deleted.text
        assert gateway.ok("GET", "/api/servers") == []


def test_a_quarantined_item_shows_its_diff_and_is_re_approved(
    console: Console, gateway: Bastion, tmp_path: Path
) -> None:
    with origin_process("tests.origins.payments", "--log", str(tmp_path / "log.jsonl")) as url:
        origin = gateway.add_origin("payments", url=url)
        gateway.publish_server("pay", {"origin": "payments"})

        async def rug_pull() -> None:  # the origin rewrites lookup_customer's description after approval
            async with gateway.client("pay", gateway.token("pay")) as client:
                await client.call_tool("rug_pull", {})

        anyio.run(rug_pull)
        refreshed = console.post(f"/admin/origins/{origin['id']}/refresh", follow_redirects=True)
        assert refreshed.status_code == 200
        page = refreshed.text
        item = _tool(_origin(gateway, "payments"), "lookup_customer")
        assert item["quarantined"] is True
        assert '<span class="badge warn">1 quarantined</span>' in page
        assert '<span class="badge bad">quarantined</span>' in page
        diff = page.split('<pre id="change-', 1)[1].split("</pre>", 1)[0]
        assert re.search(r'<span class="diff-del">-[^<]*Find a customer by email address.&#34;', diff), diff
        assert re.search(r'<span class="diff-add">\+[^<]*id_rsa', diff), diff
        assert "<span>--- approved</span>" in diff and "<span>+++ offered now</span>" in diff
        assert '<span class="badge bad">high</span>' in page  # the scanner's finding on the new text
        assert re.findall(r'name="digest" value="([0-9a-f]{64})"', page) == [item["digest"]]

        stale = console.post(
            f"/admin/origins/{origin['id']}/items/approve",
            {"kind": "tool", "name": "lookup_customer", "digest": item["pinned_digest"]},
        )
        assert stale.status_code == 409 and any("changed again" in e for e in inline_errors(stale.text))
        assert _tool(_origin(gateway, "payments"), "lookup_customer")["quarantined"] is True

        approved = console.post(
            f"/admin/origins/{origin['id']}/items/approve",
            {"kind": "tool", "name": "lookup_customer", "digest": item["digest"]},
            follow_redirects=True,
        )
        assert approved.status_code == 200 and "is approved: it is served again" in approved.text
        assert "Re-approve" not in _buttons(approved.text) and "diff-add" not in approved.text
        after = _tool(_origin(gateway, "payments"), "lookup_customer")
        assert after["quarantined"] is False and after["pinned_digest"] == item["digest"]


def test_an_auditor_sees_origins_and_servers_but_cannot_change_them(gateway: Bastion) -> None:
    body = {"username": "audrey", "password": AUDITOR_PASSWORD, "roles": ["auditor"]}
    gateway.ok("POST", "/api/users", json=body)
    # Nothing listens on port 9: discovery fails, and its error is on the page.
    origin = gateway.ok(
        "POST", "/api/origins", json={"name": "dead", "transport": "http", "url": "http://127.0.0.1:9/mcp"}
    )
    server = gateway.ok("POST", "/api/servers", json={"slug": "sales", "title": "Sales"})
    auditor = Console(gateway, "audrey", AUDITOR_PASSWORD)
    try:
        listing = auditor.get("/admin/origins")
        assert listing.status_code == 200 and "dead" in listing.text and 'badge warn">pending' in listing.text
        assert '<span class="badge bad">error</span>' in listing.text
        assert _forms(listing.text) == set() and "Register an origin" not in listing.text
        detail = auditor.get(f"/admin/origins/{origin['id']}")
        assert detail.status_code == 200 and "Discovery failed" in detail.text
        assert _forms(detail.text) == set()
        assert not {"Approve", "Reject", "Refresh discovery", "Delete origin"} & _buttons(detail.text)

        servers = auditor.get("/admin/servers")
        assert servers.status_code == 200 and "sales" in servers.text and _forms(servers.text) == set()
        page = auditor.get(f"/admin/servers/{server['id']}")
        assert page.status_code == 200 and 'id="client-config"' in page.text
        assert _forms(page.text) == set()
        assert not {"Add items", "Publish", "Delete server"} & _buttons(page.text)

        refused = {
            "/admin/origins": {"name": "sneaky", "transport": "http", "url": "http://127.0.0.1:9/mcp"},
            f"/admin/origins/{origin['id']}/review": {"decision": "approve"},
            f"/admin/origins/{origin['id']}/refresh": {},
            f"/admin/origins/{origin['id']}/items/approve": {"kind": "tool", "name": "x", "digest": "0" * 64},
            f"/admin/origins/{origin['id']}/delete": {},
            "/admin/servers": {"slug": "sneaky"},
            f"/admin/servers/{server['id']}/compose": {"origin": origin["id"]},
            f"/admin/servers/{server['id']}/publish": {},
            f"/admin/servers/{server['id']}/delete": {},
        }
        for path, data in refused.items():
            answer = auditor.post(path, data)
            assert answer.status_code == 403 and "permission" in answer.text, path
    finally:
        auditor.close()
    assert [(o["name"], o["status"]) for o in gateway.ok("GET", "/api/origins")] == [("dead", "pending")]
    assert [(s["slug"], s["published"]) for s in gateway.ok("GET", "/api/servers")] == [("sales", False)]
