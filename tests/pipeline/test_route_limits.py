"""Rate limits on the OAuth endpoints: per client address, one budget across replicas in Redis."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import httpx
import pytest
from limits import parse

from bastion.errors import TooManyRequests
from bastion.pipeline.windows import limiter_storage
from bastion.web.ratelimit import RouteLimits
from tests.harness import run_bastion
from tests.redis_server import namespace, shared_redis_url

pytestmark = pytest.mark.anyio


def test_authorization_requests_from_one_address_are_limited_with_retry_after(tmp_path: Path) -> None:
    with (
        run_bastion(tmp_path, rate_limit_authorize="2/minute") as bastion,
        httpx.Client(base_url=bastion.base_url) as http,
    ):
        for _ in range(2):  # malformed requests count as much as good ones
            assert http.get("/oauth/authorize", params={"client_id": "nobody"}).status_code == 401  # unknown client
        limited = http.get("/oauth/authorize", params={"client_id": "nobody"})
    assert limited.status_code == 429
    assert 0 < int(limited.headers["retry-after"]) <= 60
    assert "at most 2 per 1 minute" in limited.text


async def test_two_replicas_limiters_on_one_redis_spend_one_budget() -> None:
    prefix = namespace()
    storages = [limiter_storage(shared_redis_url(), prefix, 2.0) for _ in range(2)]
    replicas = [RouteLimits({"token": "3/minute"}, storage) for storage in storages]
    try:
        for n in range(3):
            await replicas[n % 2].hit("token", "198.51.100.7")
        for replica in replicas:
            with pytest.raises(TooManyRequests) as refused:
                await replica.hit("token", "198.51.100.7")
            assert refused.value.retry_after >= 1
        await replicas[0].hit("token", "198.51.100.8")  # another address has its own budget
    finally:
        for storage in storages:
            await storage.aclose()


async def test_an_unreachable_limiter_refuses_instead_of_letting_everything_through() -> None:
    from bastion.errors import Unavailable

    storage = limiter_storage("redis://127.0.0.1:1/0", namespace(), 0.5)
    try:
        with pytest.raises(Unavailable, match="rate limiter cannot be reached"):
            await RouteLimits({"token": "3/minute"}, storage).hit("token", "198.51.100.7")
    finally:
        await storage.aclose()


async def test_in_memory_windows_start_no_thread_per_hit_and_still_forget_old_entries() -> None:
    storage = limiter_storage(None, "test", 1.0)
    assert storage.memory is not None
    windows, exact = storage.sliding(), storage.moving()
    item = parse("3/second")
    await anyio.sleep(0.05)  # the timer thread the storage's constructor started (and cancelled) ends
    before = threading.active_count()
    assert [await windows.hit(item, "server", "ann") for _ in range(4)] == [True, True, True, False]
    assert [await exact.hit(item, "sign-in", "ann") for _ in range(4)] == [True, True, True, False]
    assert threading.active_count() == before  # limits' own storage has a timer thread running 10 ms now
    await anyio.sleep(2.1)  # both windows have passed; the next hit sweeps what expired
    assert await windows.hit(item, "server", "bob") and await exact.hit(item, "sign-in", "bob")
    memory = storage.memory
    assert not any("/ann/" in key for key in memory.events)  # trimmed, and the key forgotten
    assert not any("/ann/" in key for key in memory.storage)  # expired counters dropped
    assert await windows.hit(item, "server", "ann") and await exact.hit(item, "sign-in", "ann")


async def test_an_ipv6_client_is_counted_by_its_network_not_by_each_of_its_addresses() -> None:
    """A client holds a whole /64: counted per address, each of its 2^64 addresses would bring a
    fresh budget (and a key of its own in the limiter's storage)."""
    limits = RouteLimits({"sign-in": "2/minute"})
    await limits.hit("sign-in", "2001:db8:1:2::1")
    await limits.hit("sign-in", "2001:db8:1:2:ffff::9")
    with pytest.raises(TooManyRequests):
        await limits.hit("sign-in", "2001:db8:1:2:abcd::77")  # the same /64
    await limits.hit("sign-in", "2001:db8:1:3::1")  # the next /64: someone else
    await limits.hit("sign-in", "64:ff9b::c000:201")  # NAT64: the IPv4 client it carries (192.0.2.1)
    await limits.hit("sign-in", "64:ff9b::c000:263")  # another IPv4 client behind the same translator
    await limits.hit("sign-in", "192.0.2.1")
    with pytest.raises(TooManyRequests):
        await limits.hit("sign-in", "::ffff:192.0.2.1")  # the same client, spelled as IPv6
    await limits.hit("sign-in", "192.0.2.2")  # IPv4: each address its own
    await limits.hit("sign-in", "192.0.2.2")
    with pytest.raises(TooManyRequests):
        await limits.hit("sign-in", "192.0.2.2")
