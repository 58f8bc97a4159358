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
