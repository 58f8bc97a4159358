"""The snapshot holder keeps serving through store outages and catches up after."""

from __future__ import annotations

import anyio
import pytest

from bastion.catalog.holder import SnapshotHolder
from bastion.catalog.snapshot import Snapshot

pytestmark = pytest.mark.anyio


async def test_epoch_poll_survives_a_store_outage_and_refreshes_once_the_store_is_back() -> None:
    reads = 0
    loaded = anyio.Event()

    async def read_epoch() -> int:
        nonlocal reads
        reads += 1
        if reads <= 2:
            raise ConnectionRefusedError("the database is restarting")
        return 7

    async def load() -> Snapshot:
        loaded.set()
        return Snapshot(epoch=7, servers={}, origins={}, tokens={})

    holder = SnapshotHolder(load, read_epoch)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(holder.poll_epoch, 0.01)
        with anyio.fail_after(5):
            await loaded.wait()
        tasks.cancel_scope.cancel()
    assert reads >= 3
    assert holder.current.epoch == 7


async def test_a_listener_that_fails_keeps_neither_the_next_from_the_change_nor_the_reload_from_ending() -> None:
    """The listener that ends a revoked token's streams runs even when one before it fails (a store
    read that timed out, say), and the request that caused the reload does not fail with it."""

    async def read_epoch() -> int:
        return 1

    async def load() -> Snapshot:
        return Snapshot(epoch=1, servers={}, origins={}, tokens={})

    seen: list[int] = []

    async def failing(_old: Snapshot, _new: Snapshot) -> None:
        raise ConnectionResetError("the store went away mid-read")

    async def notifier(_old: Snapshot, new: Snapshot) -> None:
        seen.append(new.epoch)

    holder = SnapshotHolder(load, read_epoch)
    holder.on_change(failing)
    holder.on_change(notifier)
    await holder.refresh()
    assert seen == [1] and holder.current.epoch == 1
