"""What MCP sessions keep in the store: one sealing key for all replicas, and the sessions DELETE ended."""

from __future__ import annotations

import time

import anyio
import pytest
from sqlalchemy import select

from bastion.store.db import Database
from bastion.store.models import McpSessionEnd
from bastion.store.repos.mcp_sessions import SqlSessionEnds, session_sealing_key
from bastion.store.tenancy import SYSTEM

pytestmark = pytest.mark.anyio


async def test_replicas_starting_together_agree_on_one_generated_sealing_key(db: Database) -> None:
    replicas = [Database(db.url) for _ in range(4)]
    keys: list[bytes] = []

    async def start(replica: Database) -> None:
        keys.append(await session_sealing_key(replica))

    try:
        async with anyio.create_task_group() as tasks:
            for replica in replicas:
                tasks.start_soon(start, replica)
    finally:
        for replica in replicas:
            await replica.close()

    assert len(keys) == 4 and len(set(keys)) == 1 and len(keys[0]) == 32
    assert await session_sealing_key(db) == keys[0]  # kept: a restart seals with the same key


async def test_an_end_is_seen_by_a_replica_that_starts_later_and_by_one_that_polls(db: Database) -> None:
    here, there = SqlSessionEnds(db), SqlSessionEnds(db)
    assert await there.since(None) == ({}, None)
    later = time.time() + 600

    await here.record("first", later)
    ended, mark = await there.since(None)
    assert set(ended) == {"first"} and ended["first"] == pytest.approx(later)
    assert mark is not None

    await here.record("second", later)
    ended, next_mark = await there.since(mark)
    assert "second" in ended
    assert next_mark is not None and next_mark >= mark


async def test_ends_of_ids_that_expired_anyway_are_neither_reported_nor_kept(db: Database) -> None:
    ends = SqlSessionEnds(db)
    await ends.record("stale", time.time() - 1)
    assert await ends.since(None) == ({}, None)

    await ends.record("fresh", time.time() + 600)

    async with db.session(SYSTEM) as session:
        assert (await session.scalars(select(McpSessionEnd.nonce))).all() == ["fresh"]


async def test_recording_the_same_end_twice_is_harmless(db: Database) -> None:
    ends = SqlSessionEnds(db)
    await ends.record("twice", time.time() + 600)
    await ends.record("twice", time.time() + 600)
    ended, _ = await ends.since(None)
    assert set(ended) == {"twice"}
