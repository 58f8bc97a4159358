"""The dashboard's aggregates over the audit trail, on SQLite and PostgreSQL, one tenant at a time."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bastion.audit.chain import AuditRecord
from bastion.store.db import Database
from bastion.store.models import Tenant
from bastion.store.repos.audit_stats import overview
from bastion.store.tenancy import SYSTEM, Tenancy
from tests.audit.chains import BASE_US, Keys, audit_log, record, write

pytestmark = pytest.mark.anyio

MINUTE = 60_000_000


def _at(minute: int, **fields: Any) -> AuditRecord:
    return replace(record(minute, at_us=BASE_US + minute * MINUTE), **fields)


async def test_traffic_denials_upstream_and_top_lists_per_bucket(
    store: Database, tenant: str, keys: Keys, tmp_path: Path
) -> None:
    other = uuid.uuid4().hex
    async with store.session(SYSTEM) as session:
        session.add(Tenant(id=other, slug=f"other-{other[:12]}", name="Other"))
    log = audit_log(store, tmp_path, keys)
    inbound = {"kind": "mcp.request", "method": "tools/call"}
    await write(
        log,
        tenant,
        [
            _at(0, **inbound, target="list_stock", principal="ann"),
            _at(1, **inbound, target="list_stock", principal="ann"),
            _at(2, **inbound, target="refund_order", principal="bob", decision="deny", reason="rate limit"),
            _at(3, kind="upstream.call", method="tools/call", target="list_stock", latency_us=4000),
            _at(4, kind="upstream.call", method="tools/call", target="list_stock", latency_us=2000, decision="error"),
            _at(31, **inbound, target="get_order", principal="ann", decision="error"),
            _at(32, **inbound, target="refund_order", principal="bob", decision="deny", reason="rate limit"),
            _at(33, **inbound, target="refund_order", principal="bob", decision="deny", reason="needs approval"),
            _at(90, **inbound, target="list_stock", principal="ann"),  # outside the window
        ],
    )
    await write(log, other, [_at(5, **inbound, target="secret_tool", principal="eve")])
    await log.aclose()

    stats = await overview(store, Tenancy.of(tenant), since_us=BASE_US, until_us=BASE_US + 60 * MINUTE, buckets=2)

    first, second = stats.buckets
    assert (first.allowed, first.denied, first.errors) == (2, 1, 0)
    assert (first.upstream_calls, first.upstream_errors, first.upstream_latency_ms) == (2, 1, 3.0)
    assert (second.allowed, second.denied, second.errors) == (0, 2, 1)
    assert second.start_us == BASE_US + 30 * MINUTE
    assert (stats.requests, stats.denied, stats.upstream_errors) == (6, 3, 1)
    assert stats.denials == [("rate limit", 2), ("needs approval", 1)]
    assert stats.tools == [("refund_order", 3), ("list_stock", 2), ("get_order", 1)]
    assert stats.principals == [("ann", 3), ("bob", 3)]  # equal counts: by name
    assert "secret_tool" not in dict(stats.tools) and "eve" not in dict(stats.principals)  # another tenant's
