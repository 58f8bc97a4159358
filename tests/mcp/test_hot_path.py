"""The steady-state hot path of tools/call runs no database query."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.harness import STDIO_INVENTORY, Bastion, run_bastion

pytestmark = pytest.mark.anyio


@pytest.fixture
def quiet_bastion(tmp_path: Path) -> Iterator[Bastion]:
    # The epoch poll (a background query every poll interval, independent of traffic)
    # is pushed out so that any statement counted below comes from request handling.
    with run_bastion(tmp_path, epoch_poll_seconds=3600) as bastion:
        yield bastion


async def test_two_hundred_tool_calls_after_warm_up_issue_no_sql(quiet_bastion: Bastion) -> None:
    bastion = quiet_bastion
    bastion.add_origin("local", command=STDIO_INVENTORY)
    bastion.publish_server("hot", {"origin": "local", "items": ["list_stock"]})
    token = bastion.token("hot")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = bastion.services.db.engine.sync_engine
    for mode in ("legacy", "2026-07-28"):
        async with bastion.client("hot", token, mode=mode) as client:
            await client.call_tool("list_stock", {})  # warm-up: origin connection and handshake
            event.listen(engine, "before_cursor_execute", count)
            try:
                for _ in range(200):
                    result = await client.call_tool("list_stock", {"sku": "WID-001"})
                    assert not result.is_error
            finally:
                event.remove(engine, "before_cursor_execute", count)
    # Two batch writers run beside the requests: the API token use log (a few statements per
    # ~0.5 s batch) and the audit trail (a forwarded call is answered once its record is durable:
    # one append per batch of waiting calls, so at most one per call for a sequential client).
    # Request handling itself issues none.
    uses = ("SELECT api_tokens.id, api_tokens.tenant_id", "INSERT INTO api_token_uses", "UPDATE api_tokens SET uses=")
    audit = ("SELECT audit_heads.", "INSERT INTO audit_records", "UPDATE audit_heads SET", "INSERT INTO audit_heads")
    requests = [s for s in statements if not s.startswith(uses + audit)]
    assert requests == []
    assert len([s for s in statements if s.startswith(uses)]) <= 60, "the use log should write in batches"
    appends = [s for s in statements if s.startswith("INSERT INTO audit_records")]
    assert 0 < len(appends) <= 400, "the audit trail appends in batches, never more than once per call"

    # Control: the same listener does see the queries a control-plane read makes.
    event.listen(engine, "before_cursor_execute", count)
    try:
        bastion.ok("GET", "/api/servers")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements, "the statement counter is not attached to Bastion's engine"
