"""Per-client-address rate limits on the identity plane's public endpoints (sign-in, registration, token).

The `limits` library keeps moving windows in memory on one node; the policy
pipeline's limiter (with Redis across replicas) takes over with its own issue.
Refusals are 429 with `Retry-After`.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from bastion.errors import TooManyRequests

__all__ = ["RouteLimits"]


class RouteLimits:
    def __init__(self, rules: dict[str, str]) -> None:
        """`rules` maps a route name to a limit in the `limits` notation, e.g. "10/minute"."""
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._items: dict[str, RateLimitItem] = {route: parse(rule) for route, rule in rules.items()}

    async def hit(self, route: str, client: str) -> None:
        item = self._items.get(route)
        if item is None or await self._limiter.hit(item, route, client):
            return
        stats = await self._limiter.get_window_stats(item, route, client)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests(
            f"too many {route} requests from this address: at most {item}; retry in {retry_after} s",
            retry_after=retry_after,
        )
