"""Tool poisoning: a definition changed after approval is quarantined until an administrator
approves the change; an item that arrives with hidden instructions waits for a person too."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from tests.harness import Bastion, origin_process

pytestmark = pytest.mark.anyio


def _item(origin: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in origin["items"] if i["kind"] == "tool" and i["name"] == name)


@contextmanager
def _published(bastion: Bastion, tmp_path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    """The payments origin, approved and published whole as `pay`: (the origin, its URL)."""
    with origin_process("tests.origins.payments", "--log", str(tmp_path / "log.jsonl")) as url:
        origin = bastion.add_origin("payments", url=url)
        bastion.publish_server("pay", {"origin": "payments"})
        yield origin, url


async def test_a_rug_pull_quarantines_the_tool_until_an_administrator_approves_the_change(
    bastion: Bastion, tmp_path: Path
) -> None:
    with _published(bastion, tmp_path) as (origin, _):
        async with bastion.client("pay", bastion.token("pay")) as client:
            before = {t.name for t in (await client.list_tools()).tools}
            assert "lookup_customer" in before
            assert not (await client.call_tool("lookup_customer", {"email": "a@example.com"})).is_error
            await client.call_tool("rug_pull", {})  # the origin changes the description behind Bastion's back
            changed = bastion.ok("POST", f"/api/origins/{origin['id']}/refresh")
            item = _item(changed, "lookup_customer")
            assert item["quarantined"] is True
            assert "id_rsa" in item["change"] and item["change"].startswith("--- approved")
            assert any(flag["severity"] == "high" for flag in item["flags"])
            assert "lookup_customer" not in {t.name for t in (await client.list_tools()).tools}
            with pytest.raises(MCPError) as caught:
                await client.call_tool("lookup_customer", {"email": "a@example.com"})
            assert "quarantined" in caught.value.error.message
            assert "no administrator approved" in caught.value.error.message
            # Nothing else of the origin is affected.
            assert "fetch_notice" in {t.name for t in (await client.list_tools()).tools}
            # A connector admin reviews the diff and approves the definition they saw (by its digest).
            stale = {"kind": "tool", "name": "lookup_customer", "digest": item["pinned_digest"]}
            refused = bastion.api("POST", f"/api/origins/{origin['id']}/items/approve", json=stale)
            assert refused.status_code == 409 and "changed again since you reviewed it" in refused.text
            reviewed = {"kind": "tool", "name": "lookup_customer", "digest": item["digest"]}
            approved = bastion.ok("POST", f"/api/origins/{origin['id']}/items/approve", json=reviewed)
            assert _item(approved, "lookup_customer")["quarantined"] is False
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert "id_rsa" in (tools["lookup_customer"].description or "")
            assert not (await client.call_tool("lookup_customer", {"email": "a@example.com"})).is_error


async def test_a_tool_that_arrives_with_hidden_instructions_is_held_at_approval(
    bastion: Bastion, tmp_path: Path
) -> None:
    with _published(bastion, tmp_path) as (first, url):
        async with bastion.client("pay", bastion.token("pay")) as client:
            await client.call_tool("rug_pull", {})
        bastion.ok("DELETE", f"/api/origins/{first['id']}")
        # The same origin registered afresh: its poisoned description is there from the start.
        pending = bastion.ok("POST", "/api/origins", json={"name": "payments2", "transport": "http", "url": url})
        assert any(f["severity"] == "high" for f in _item(pending, "lookup_customer")["flags"])
        approved = bastion.ok("POST", f"/api/origins/{pending['id']}/review", json={"decision": "approve"})
        assert _item(approved, "lookup_customer")["quarantined"] is True
        assert _item(approved, "fetch_notice")["quarantined"] is False
        bastion.publish_server("pay2", {"origin": "payments2"})
        async with bastion.client("pay2", bastion.token("pay2")) as client:
            names = {t.name for t in (await client.list_tools()).tools}
    assert "lookup_customer" not in names and "fetch_notice" in names


async def test_an_item_withdrawn_and_offered_again_changed_is_quarantined_not_taken_as_new(
    bastion: Bastion, tmp_path: Path
) -> None:
    with _published(bastion, tmp_path) as (origin, _):
        async with bastion.client("pay", bastion.token("pay")) as client:
            await client.call_tool("vanish", {"come_back": False})
            gone = bastion.ok("POST", f"/api/origins/{origin['id']}/refresh")
            assert "lookup_customer" not in {i["name"] for i in gone["items"]}
            await client.call_tool("vanish", {"come_back": True})
            back = _item(bastion.ok("POST", f"/api/origins/{origin['id']}/refresh"), "lookup_customer")
            assert back["quarantined"] is True and back["pinned_digest"] is None
            assert back["change"] == "never approved: the whole definition is new"
            with pytest.raises(MCPError) as caught:
                await client.call_tool("lookup_customer", {"email": "a@example.com"})
    assert "quarantined" in caught.value.error.message


async def test_a_member_cannot_approve_an_item(bastion: Bastion) -> None:
    from tests.governance.people import add_person, as_person

    member = add_person(bastion, "mia", ["member"])
    body = {"kind": "tool", "name": "x", "digest": "0" * 64}
    refused = as_person(bastion, member, "POST", "/api/origins/none/items/approve", json=body)
    assert refused.status_code == 403


async def test_an_approval_names_the_catalog_it_reviewed_and_a_change_since_is_not_pinned(
    bastion: Bastion, tmp_path: Path
) -> None:
    """The origin changes a tool between the reviewer's look and the approval (a rug pull timed for the
    review): the approval naming what was seen is refused, and nothing is pinned."""
    with origin_process("tests.origins.payments", "--log", str(tmp_path / "log.jsonl")) as url:
        pending = bastion.ok("POST", "/api/origins", json={"name": "payments3", "transport": "http", "url": url})
        seen = pending["catalog_digest"]
        assert pending["status"] == "pending" and len(seen) == 64
        # A list shows no digest: one of no items would name a catalog nobody saw.
        assert {o["catalog_digest"] for o in bastion.ok("GET", "/api/origins")} == {""}
        async with Client(streamable_http_client(url), cache=None) as origin:
            await origin.call_tool("rug_pull", {})  # straight at the origin: nothing of Bastion's involved
        changed = bastion.ok("POST", f"/api/origins/{pending['id']}/refresh")
        assert changed["catalog_digest"] != seen
        review = f"/api/origins/{pending['id']}/review"
        stale = bastion.api("POST", review, json={"decision": "approve", "catalog_digest": seen})
        assert stale.status_code == 409 and "other items than the ones you reviewed" in stale.text
        assert bastion.ok("GET", f"/api/origins/{pending['id']}")["status"] == "pending"  # nothing pinned
        fresh = bastion.ok("POST", review, json={"decision": "approve", "catalog_digest": changed["catalog_digest"]})
        assert fresh["status"] == "approved"
