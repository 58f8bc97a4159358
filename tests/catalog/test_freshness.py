"""`SnapshotHolder.checked()`: a request is decided on a snapshot at least as new as the shared epoch.

The shared epoch here is an in-memory one (what the Redis bus keeps in Redis); the Redis bus
itself is tested in tests/bus, and both together across processes in tests/replicas.
"""

from __future__ import annotations

import anyio
import pytest

from bastion.bus import ChangeEvent
from bastion.catalog.holder import SnapshotHolder
from bastion.catalog.snapshot import Snapshot
from bastion.errors import Unavailable

pytestmark = pytest.mark.anyio


class MemoryEpoch:
    """A shared epoch in memory: `value` None means nobody vouches for it (reload)."""

    def __init__(self, value: int | None) -> None:
        self.value = value
        self.reachable = True
        self.announced: list[int] = []

    async def read(self) -> int | None:
        if not self.reachable:
            raise Unavailable("Redis is unreachable")
        return self.value

    async def announce(self, epoch: int) -> None:
        if not self.reachable:
            raise Unavailable("Redis is unreachable")
        self.announced.append(epoch)
        self.value = max(epoch, self.value or 0)


class Store:
    """The store as the holder sees it: an epoch, a load counter, and a switch to make it fail."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.loads = 0
        self.down = False
        self.gate: anyio.Event | None = None  # when set, loads wait for it

    async def load(self) -> Snapshot:
        self.loads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise Unavailable("the store is unreachable")
        return Snapshot(epoch=self.epoch, servers={}, origins={}, tokens={})

    async def read_epoch(self) -> int:
        return self.epoch


async def _holder(store: Store, shared: MemoryEpoch) -> SnapshotHolder:
    holder = SnapshotHolder(store.load, store.read_epoch, shared=shared)
    await holder.refresh()
    store.loads = 0
    return holder


async def test_a_snapshot_as_new_as_the_shared_epoch_is_used_without_touching_the_store() -> None:
    store, shared = Store(epoch=3), MemoryEpoch(3)
    holder = await _holder(store, shared)

    assert (await holder.checked()).epoch == 3
    assert store.loads == 0


async def test_an_older_snapshot_is_reloaded_once_for_all_the_requests_waiting_on_it() -> None:
    store, shared = Store(epoch=3), MemoryEpoch(3)
    holder = await _holder(store, shared)
    store.epoch, shared.value = 4, 4  # committed and announced by another replica
    store.gate = anyio.Event()
    epochs: list[int] = []

    async def request() -> None:
        epochs.append((await holder.checked()).epoch)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            for _ in range(20):
                tasks.start_soon(request)
            await anyio.wait_all_tasks_blocked()
            store.gate.set()
    assert epochs == [4] * 20
    assert store.loads == 1


async def test_an_unknown_shared_epoch_forces_a_reload_and_the_loaded_epoch_is_announced() -> None:
    store, shared = Store(epoch=6), MemoryEpoch(6)
    holder = await _holder(store, shared)
    shared.value, shared.announced = None, []  # Redis lost the key, or this replica just reconnected
    store.epoch = 7

    assert (await holder.checked()).epoch == 7
    assert store.loads == 1
    assert shared.announced == [7]
    assert (await holder.checked()).epoch == 7
    assert store.loads == 1  # vouched for again: back to a plain comparison


async def test_a_request_is_refused_while_the_shared_epoch_cannot_be_read() -> None:
    store, shared = Store(epoch=2), MemoryEpoch(2)
    holder = await _holder(store, shared)
    shared.reachable = False

    with pytest.raises(Unavailable, match="Redis"):
        await holder.checked()
    shared.reachable = True
    assert (await holder.checked()).epoch == 2


async def test_a_request_is_refused_while_the_newer_state_cannot_be_loaded_and_the_old_one_is_not_used() -> None:
    store, shared = Store(epoch=2), MemoryEpoch(2)
    holder = await _holder(store, shared)
    store.epoch, shared.value, store.down = 3, 3, True

    with pytest.raises(Unavailable, match="store"):
        await holder.checked()
    with pytest.raises(Unavailable, match="store"):
        await holder.checked()  # each request tries again: no cached verdict
    assert holder.current.epoch == 2
    store.down = False
    assert (await holder.checked()).epoch == 3


async def test_a_change_event_for_an_epoch_already_loaded_costs_no_reload() -> None:
    store, shared = Store(epoch=5), MemoryEpoch(5)
    holder = await _holder(store, shared)

    await holder.handle_event(ChangeEvent("tokens", "t", epoch=5))
    assert store.loads == 0
    store.epoch = 6
    await holder.handle_event(ChangeEvent("tokens", "t", epoch=6))
    await holder.handle_event(ChangeEvent("catalog"))  # no epoch (a resynchronization): always reloads
    assert store.loads == 2


async def test_without_a_shared_epoch_the_current_snapshot_is_used_as_it_is() -> None:
    store = Store(epoch=1)
    holder = SnapshotHolder(store.load, store.read_epoch)
    await holder.refresh()
    store.epoch = 2

    assert (await holder.checked()).epoch == 1  # one process: its own writes refresh it synchronously
    assert store.loads == 1


async def test_a_failed_reload_refuses_every_request_that_waited_for_it_at_once() -> None:
    """Requests queued behind one reload share its failure: each trying in turn would cost each the
    store's timeout, one after another (10 waiters, 10 timeouts in a row)."""
    store, shared = Store(epoch=2), MemoryEpoch(2)
    holder = await _holder(store, shared)
    store.epoch, shared.value, store.down = 3, 3, True
    store.gate = anyio.Event()
    refused: list[str] = []

    async def request() -> None:
        try:
            await holder.checked()
        except Unavailable as exc:
            refused.append(exc.message)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            for _ in range(10):
                tasks.start_soon(request)
            await anyio.wait_all_tasks_blocked()
            store.gate.set()
    assert len(refused) == 10 and store.loads == 1
    store.down, store.gate = False, None
    assert (await holder.checked()).epoch == 3  # a request after the failure tries again


async def test_one_process_whose_reload_failed_after_its_own_change_loads_again_or_refuses() -> None:
    """A change committed here (a token revoked), its reload then failed (a store hiccup): the old
    snapshot, which still honours the token, is not served as current."""
    store = Store(epoch=1)
    holder = SnapshotHolder(store.load, store.read_epoch)
    await holder.refresh()
    store.epoch, store.down = 2, True
    with pytest.raises(Unavailable):
        await holder.handle_event(ChangeEvent("tokens", "t", epoch=2))
    with pytest.raises(Unavailable, match="store"):
        await holder.checked()
    store.down = False
    assert (await holder.checked()).epoch == 2
    store.epoch = 3
    assert (await holder.checked()).epoch == 2  # caught up: its own snapshot again, no store read
