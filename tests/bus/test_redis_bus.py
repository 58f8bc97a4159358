"""The Redis bus against real Redis: events between processes' buses, the shared epoch, reconnects."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest
from redis.asyncio import Redis

from bastion.bus import ChangeEvent
from bastion.bus.redis import RedisBus
from bastion.errors import Unavailable
from tests.redis_server import namespace, private_redis, shared_redis_url

pytestmark = pytest.mark.anyio


class Store:
    """Stands in for the database's change epoch: a number the test moves."""

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch
        self.down = False

    async def read_epoch(self) -> int:
        if self.down:
            raise ConnectionRefusedError("the database is unreachable")
        return self.epoch


class Received:
    """A subscriber that remembers events and lets the test wait for the next matching one."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []
        self._arrived = anyio.Event()

    async def __call__(self, event: ChangeEvent) -> None:
        self.events.append(event)
        self._arrived.set()
        self._arrived = anyio.Event()

    async def wait_for(self, match: Callable[[ChangeEvent], bool]) -> ChangeEvent:
        with anyio.fail_after(10):
            while True:
                found = next((e for e in self.events if match(e)), None)
                if found is not None:
                    return found
                await self._arrived.wait()


@asynccontextmanager
async def running_buses(
    url: str, store: Store, count: int, *, prefix: str | None = None, **options: float
) -> AsyncIterator[list[RedisBus]]:
    """`count` buses of one deployment (one namespace), each subscribed and listening."""
    shared_namespace = prefix or namespace()
    async with AsyncExitStack() as stack, anyio.create_task_group() as tasks:
        buses = []
        for _ in range(count):
            bus = RedisBus(url, read_epoch=store.read_epoch, namespace=shared_namespace, timeout=1.0, **options)
            stack.push_async_callback(bus.aclose)
            tasks.start_soon(bus.run)
            buses.append(bus)
        with anyio.fail_after(10):
            for bus in buses:
                await bus.listening.wait()
        yield buses
        tasks.cancel_scope.cancel()


async def test_an_event_reaches_the_other_replica_with_the_store_epoch_and_this_one_exactly_once() -> None:
    store = Store(epoch=4)
    async with running_buses(shared_redis_url(), store, 2) as (a, b):
        on_a, on_b = Received(), Received()
        a.subscribe(on_a)
        b.subscribe(on_b)

        await a.publish(ChangeEvent("tokens", "tok-1"))
        assert on_a.events == [ChangeEvent("tokens", "tok-1", 4)]  # delivered before publish returned
        assert await on_b.wait_for(lambda e: e.subject_id == "tok-1") == ChangeEvent("tokens", "tok-1", 4)

        # A's own echo precedes B's event on A's subscription: once B's arrives, the echo was skipped.
        await b.publish(ChangeEvent("catalog", "srv-1"))
        await on_a.wait_for(lambda e: e.subject_id == "srv-1")
        assert [e.subject_id for e in on_a.events] == ["tok-1", "srv-1"]


async def test_the_shared_epoch_follows_the_store_epoch_and_never_goes_back() -> None:
    store = Store(epoch=5)
    async with running_buses(shared_redis_url(), store, 1) as (bus,):
        assert await bus.read() is None  # nothing announced yet: the reader must reload
        await bus.publish(ChangeEvent("catalog"))
        assert await bus.read() == 5

        await bus.announce(3)  # a slow replica announcing an older load
        assert await bus.read() == 5
        store.epoch = 9
        await bus.publish(ChangeEvent("tokens"))
        assert await bus.read() == 9


async def test_a_lost_epoch_key_reads_as_unknown_so_every_replica_reloads() -> None:
    url, store, prefix = shared_redis_url(), Store(epoch=2), namespace()
    async with running_buses(url, store, 1, prefix=prefix) as (bus,):
        await bus.announce(2)
        assert await bus.read() == 2
        raw = Redis.from_url(url)
        try:
            await raw.delete(f"{prefix}:epoch")  # as a Redis restart without persistence would
        finally:
            await raw.aclose()
        assert await bus.read() is None


async def test_a_store_failure_while_publishing_withdraws_the_shared_epoch() -> None:
    store = Store(epoch=7)
    async with running_buses(shared_redis_url(), store, 1) as (bus,):
        await bus.announce(7)
        store.down = True
        with pytest.raises(ConnectionRefusedError):
            await bus.publish(ChangeEvent("tokens"))
        assert await bus.read() is None


async def test_while_redis_is_down_reads_are_refused_and_publish_delivers_locally_then_refuses() -> None:
    store = Store(epoch=3)
    with private_redis() as redis:
        async with running_buses(redis.url, store, 1, retry_delay=0.05) as (bus,):
            local = Received()
            bus.subscribe(local)
            await bus.publish(ChangeEvent("tokens", "before"))
            redis.kill()

            with pytest.raises(Unavailable, match="Redis"):
                await bus.read()
            with pytest.raises(Unavailable, match="other replicas could not be told"):
                await bus.publish(ChangeEvent("tokens", "during"))
            assert [e.subject_id for e in local.events] == ["before", "during"]

            redis.start()  # same port, empty: the epoch key is gone
            assert await bus.read() is None  # unknown until someone reloads and announces
            await bus.announce(3)
            assert await bus.read() == 3


async def test_vouching_again_after_a_failure_announces_the_store_epoch_not_an_older_load() -> None:
    store, prefix = Store(epoch=3), namespace()
    with private_redis() as redis:
        async with running_buses(redis.url, store, 1, prefix=prefix, retry_delay=0.05) as (bus,):
            await bus.announce(3)
            redis.kill()
            with pytest.raises(Unavailable):
                await bus.read()
            store.epoch = 5  # committed while Redis was down; its writer could not announce it
            redis.start()

            await bus.announce(3)  # a reload that began before the outage finishes now
            raw = Redis.from_url(redis.url)
            try:
                assert await raw.get(f"{prefix}:epoch") == b"5"
            finally:
                await raw.aclose()


async def test_the_subscriber_reconnects_after_a_redis_restart_and_asks_for_one_reload() -> None:
    store = Store(epoch=1)
    with private_redis() as redis:
        async with running_buses(redis.url, store, 2, retry_delay=0.05) as (a, b):
            on_a, on_b = Received(), Received()
            a.subscribe(on_a)
            b.subscribe(on_b)
            redis.kill()
            redis.start()  # same port; each subscriber notices the break and subscribes again

            # Events sent while they were away are lost: subscribers get one resynchronizing event,
            # delivered once the new subscription is in place.
            assert await on_b.wait_for(lambda e: e.epoch is None) == ChangeEvent("catalog")
            await on_a.wait_for(lambda e: e.epoch is None)
            store.epoch = 2
            await a.publish(ChangeEvent("tokens", "after-restart"))
            assert (await on_b.wait_for(lambda e: e.subject_id == "after-restart")).epoch == 2
