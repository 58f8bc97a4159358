"""Export and its cursor on SQLite and PostgreSQL: records stored late carry older times than records
stored before them (a store outage, another replica's queue); the export keeps chain order, so it
still verifies offline, and `after_seq` pulls every record stored since, however old its time."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bastion.audit.exported import verify_export
from bastion.store.db import Database
from bastion.store.repos.audit_search import AuditQuery, export, export_lines
from bastion.store.tenancy import SYSTEM, Tenancy
from tests.audit.chains import BASE_US, Keys, audit_log, record, write

pytestmark = pytest.mark.anyio


async def _exported(db: Database, tenant: str, query: AuditQuery) -> list[bytes]:
    return [line async for line in export_lines(db, Tenancy.of(tenant), query)]


async def test_records_stored_late_keep_the_export_in_chain_order_and_the_cursor_finds_them(
    store: Database, tenant: str, tmp_path: Path, keys: Keys
) -> None:
    log = audit_log(store, tmp_path, keys, every=1000)
    await write(log, tenant, [record(n) for n in range(10, 14)])  # seq 1-4, times 10-13 s
    first = await _exported(store, tenant, AuditQuery())
    cursor = orjson.loads(first[-1])["seq"]
    # Stored after them, from before them: e.g. journaled by a replica during a store outage.
    late = [record(n) for n in (2, 1, 3)]
    await write(log, tenant, late)

    lines = await _exported(store, tenant, AuditQuery())
    assert [orjson.loads(line)["seq"] for line in lines] == [1, 2, 3, 4, 5, 6, 7]
    [chain] = verify_export(lines)
    assert (chain.broken, chain.first_seq, chain.last_seq, chain.records) == (None, 1, 7, 7)

    since = await _exported(store, tenant, AuditQuery(after_seq=cursor))
    assert [orjson.loads(line)["id"] for line in since] == [r.id for r in late]
    # A time cursor taken at the same point would have missed every one of them.
    newest_time = BASE_US + 13 * 1_000_000
    assert await _exported(store, tenant, AuditQuery(since_us=newest_time + 1)) == []
    # The cursor and the other filters combine; past the head there is nothing.
    older = AuditQuery(after_seq=2, until_us=BASE_US + 11 * 1_000_000)
    assert [orjson.loads(line)["seq"] for line in await _exported(store, tenant, older)] == [5, 6, 7]
    assert await _exported(store, tenant, AuditQuery(after_seq=7)) == []
    # Paged in small chunks, the order and the count are the same; across every tenant (the system
    # scope) each chain comes whole and in order, tenants one after another.
    paged = [entry.seq async for entry in export(store, Tenancy.of(tenant), AuditQuery(), chunk=2)]
    assert paged == [1, 2, 3, 4, 5, 6, 7]
    everyone = [(entry.tenant_id, entry.seq) async for entry in export(store, SYSTEM, AuditQuery(), chunk=2)]
    assert [seq for owner, seq in everyone if owner == tenant] == [1, 2, 3, 4, 5, 6, 7]
    assert everyone == sorted(everyone)
