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
    # The API token use log's batch writer runs beside the requests (a few statements per
    # ~0.5 s batch, on `api_token_uses` / `api_tokens`); request handling itself issues none.
    writer = ("SELECT api_tokens.id, api_tokens.tenant_id", "INSERT INTO api_token_uses", "UPDATE api_tokens SET uses=")
    requests = [s for s in statements if not s.startswith(writer)]
    assert requests == []
    assert len(statements) <= 60, "the use log should write in batches, not per call"

    # Control: the same listener does see the queries a control-plane read makes.
    event.listen(engine, "before_cursor_execute", count)
    try:
        bastion.ok("GET", "/api/servers")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements, "the statement counter is not attached to Bastion's engine"
