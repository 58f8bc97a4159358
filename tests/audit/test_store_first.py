"""Side-effecting tools reach their origin only once a record of the call is in the store; read-only
tools are answered once their record is journaled, and it reaches the store when the store is back
(BASTION_AUDIT_STORE_FIRST, default `unless-read-only`)."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from bastion.mcp.auditing import stored_first
from bastion.store.db import Database
from bastion.store.repos.audit import verify_chain
from tests.governance.people import call, mcp
from tests.harness import Bastion, eventually, inventory_gateway

pytestmark = pytest.mark.anyio

_REFUSE = "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'audit disk full'); END"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with inventory_gateway(tmp_path_factory.mktemp("store-first")) as bastion:
        yield bastion


def _database(gw: Bastion) -> Path:
    return Path(gw.settings.database_url.removeprefix("sqlite+aiosqlite:///"))


def _records(gw: Bastion, **query: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = gw.ok("GET", "/api/audit/records", params=query)
    return found


def test_the_policy_reads_the_tools_annotations() -> None:
    read_only = {"annotations": {"readOnlyHint": True}}
    write = {"annotations": {"readOnlyHint": False, "destructiveHint": False}}
    unannotated: dict[str, Any] = {}
    assert not stored_first("unless-read-only", read_only)
    assert stored_first("unless-read-only", write) and stored_first("unless-read-only", unannotated)
    assert not stored_first("destructive", write) and stored_first("destructive", unannotated)
    assert not stored_first("never", unannotated)


async def test_a_side_effecting_call_is_in_the_store_before_it_reaches_the_origin(gw: Bastion) -> None:
    token = gw.token("demo")
    placed = call(gw, "demo", token, "tools/call", name="create_reorder", arguments={"sku": "WID-001", "quantity": 5})
    assert placed["result"]["structuredContent"]["reorder_id"] == "RO-0001", placed
    (intent,) = _records(gw, kind="upstream.intent", target="create_reorder")
    assert intent["status"] == "pending" and intent["origin"] == "inventory" and intent["decision"] == "allow"
    # A read-only tool writes no intent record.
    assert "result" in call(gw, "demo", token, "tools/call", name="get_order", arguments={"order_id": "ORD-1001"})
    assert _records(gw, kind="upstream.intent", target="get_order") == []


async def test_with_the_audit_store_failing_side_effects_are_refused_and_reads_are_kept(gw: Bastion) -> None:
    token, rid = gw.token("demo"), secrets.token_hex(12)
    with sqlite3.connect(_database(gw)) as db:
        db.execute(_REFUSE)
    try:
        refused = call(
            gw, "demo", token, "tools/call", name="create_reorder", arguments={"sku": "GAD-002", "quantity": 1}
        )
        assert "audit trail" in refused["error"]["message"], refused
        # A read is answered: its record is journaled, and waits there for the store.
        read = mcp(
            gw,
            "demo",
            token,
            "tools/call",
            extra_headers={"x-request-id": rid},
            name="get_order",
            arguments={"order_id": "ORD-1002"},
        )
        assert "result" in read.json(), read.text
        await anyio.sleep(0.6)  # two rounds of the store writer, both refused
        assert _records(gw, correlation_id=rid) == []
    finally:
        with sqlite3.connect(_database(gw)) as db:
            db.execute("DROP TRIGGER refuse_audit")

    async def caught_up() -> bool:
        return {r["kind"] for r in _records(gw, correlation_id=rid)} == {"mcp.request", "upstream.call"}

    await eventually(caught_up)  # the journaled read reached the store once it was back
    # The refused call never reached the origin: the next reorder is the second one, not the third.
    placed = call(gw, "demo", token, "tools/call", name="create_reorder", arguments={"sku": "GAD-002", "quantity": 1})
    assert placed["result"]["structuredContent"]["reorder_id"] == "RO-0002", placed
    refusals = [r for r in _records(gw, target="create_reorder", decision="error") if r["kind"] == "mcp.request"]
    assert refusals and "audit trail" in refusals[0]["reason"]
    own = Database(gw.settings.database_url)  # this test's event loop, not the server's
    try:
        checked, broken = await verify_chain(own, "default")
    finally:
        await own.close()
    assert broken is None and checked > 0
