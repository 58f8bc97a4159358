"""The dedicated epoch reader against a private Redis: coalescing, credentials and database, restarts."""

from __future__ import annotations

import anyio
import pytest
from redis.asyncio import Redis

from bastion.bus.redis_epoch import EpochReader, supports
from tests.redis_server import private_redis

pytestmark = pytest.mark.anyio


async def _get_calls(client: Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def test_concurrent_readers_share_gets_sent_after_they_arrived_and_all_see_the_value() -> None:
    with private_redis() as redis:
        client = Redis.from_url(redis.url)
        reader = EpochReader(redis.url, "ns:epoch", timeout=2.0)
        try:
            await client.set("ns:epoch", 41)
            assert await reader.get() == b"41"
            before = await _get_calls(client)
            await client.set("ns:epoch", 42)  # committed before any of the readers below begins
            seen: list[bytes | None] = []

            async def read() -> None:
                seen.append(await reader.get())

            async with anyio.create_task_group() as tasks:
                for _ in range(50):
                    tasks.start_soon(read)
            assert seen == [b"42"] * 50
            assert await _get_calls(client) - before < 50  # queued readers rode on a later GET
        finally:
            await reader.aclose()
            await client.aclose()


async def test_a_missing_key_reads_as_none() -> None:
    with private_redis() as redis:
        reader = EpochReader(redis.url, "absent:epoch", timeout=2.0)
        try:
            assert await reader.get() is None
        finally:
            await reader.aclose()


async def test_the_reader_authenticates_and_selects_the_database_named_in_the_url() -> None:
    with private_redis() as redis:
        setup = Redis.from_url(redis.url)
        await setup.config_set("requirepass", "s3cret")
        await setup.aclose()
        url = f"redis://:s3cret@127.0.0.1:{redis.port}/3"
        client = Redis.from_url(url)
        try:
            await client.set("ns:epoch", 9)
            reader = EpochReader(url, "ns:epoch", timeout=2.0)
            try:
                assert await reader.get() == b"9"
            finally:
                await reader.aclose()
            wrong = EpochReader(f"redis://:wrong@127.0.0.1:{redis.port}/3", "ns:epoch", timeout=2.0)
            with pytest.raises(ConnectionError, match="refused the connection set-up"):
                await wrong.get()
        finally:
            await client.aclose()


async def test_the_reader_fails_while_redis_is_down_and_reconnects_when_it_is_back() -> None:
    with private_redis() as redis:
        reader = EpochReader(redis.url, "ns:epoch", timeout=2.0)
        try:
            assert await reader.get() is None
            redis.kill()
            with pytest.raises((OSError, EOFError)):
                await reader.get()
            with pytest.raises(OSError):
                await reader.get()  # connection refused: nothing listens
            redis.start()
            assert await reader.get() is None
        finally:
            await reader.aclose()


async def test_a_hung_redis_fails_the_read_within_the_timeout_and_the_next_read_works_once_it_answers() -> None:
    with private_redis() as redis:
        reader = EpochReader(redis.url, "ns:epoch", timeout=0.3)
        try:
            assert await reader.get() is None
            redis.pause()
            try:
                with anyio.fail_after(5), pytest.raises(TimeoutError):
                    await reader.get()
            finally:
                redis.resume()
            assert await reader.get() is None  # a new connection: the old one's reply position is unknown
        finally:
            await reader.aclose()


def test_urls_with_options_or_other_schemes_are_left_to_the_client_library() -> None:
    assert supports("redis://127.0.0.1:6379/0")
    assert supports("rediss://user:pw@cache.internal:6380/2")
    assert not supports("unix:///run/redis.sock")
    assert not supports("redis://127.0.0.1:6379/0?socket_keepalive=true")
