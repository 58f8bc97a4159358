"""Rate limits on the OAuth endpoints: per client address, one budget across replicas in Redis."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

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
