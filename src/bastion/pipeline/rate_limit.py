"""Rate limits per person, per item and per virtual server: moving windows from the `limits` library.

In memory on a single node; in Redis when replicas share one (`BASTION_REDIS_URL`), so every
replica spends from one budget. A limiter that cannot be reached denies (503): a limit that
cannot be counted is not enforced by letting everything through.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool

from bastion.errors import TooManyRequests, Unavailable
from bastion.pipeline.base import ALLOW, CallContext, Decision, StageBase
from bastion.pipeline.config import RateLimitSettings

__all__ = ["LimiterStorage", "RateLimit", "limiter_storage"]


@dataclass(frozen=True)
class LimiterStorage:
    """Where the moving windows live, and the Redis connections to close (None: in memory)."""

    storage: Storage
    connections: ConnectionPool | None = None

    async def aclose(self) -> None:
        if self.connections is not None:
            await self.connections.aclose()


def limiter_storage(redis_url: str | None, namespace: str, timeout: float) -> LimiterStorage:
    """In memory on a single node; in Redis (one budget for every replica) when one is shared."""
    if redis_url is None:
        return LimiterStorage(MemoryStorage())
    # The pool is ours (to close at shutdown); `limits` runs its Lua scripts over it.
    connections = ConnectionPool.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    url = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
    storage = RedisStorage(
        url,
        wrap_exceptions=True,
        implementation="redispy",
        key_prefix=f"{namespace}:limits",
        connection_pool=connections,  # type: ignore[arg-type]  # `limits` types its options as scalars; a pool is documented
    )
    return LimiterStorage(storage, connections)


class RateLimit(StageBase):
    name = "rate_limit"

    def __init__(self, storage: LimiterStorage) -> None:
        self._limiter = MovingWindowRateLimiter(storage.storage)
        self._parsed: dict[str, RateLimitItem] = {}

    async def on_request(self, ctx: CallContext) -> Decision:
        settings: RateLimitSettings = ctx.settings["rate_limit"]
        if not settings.enabled:
            return ALLOW
        # Most specific first: a call one person may not make spends nothing of the server's budget.
        # An item is counted by its origin's name for it, so two aliases share one budget.
        item = f"{ctx.item.origin}/{ctx.item.upstream_name}"
        checks = (
            ("per_tool", settings.per_tool, (ctx.tenant_id, ctx.server, ctx.principal_id, item)),
            ("per_principal", settings.per_principal, (ctx.tenant_id, ctx.server, ctx.principal_id)),
            ("per_server", settings.per_server, (ctx.tenant_id, ctx.server)),
        )
        for label, rule, key in checks:
            if rule is None:
                continue
            limit = self._item(rule)
            try:
                if await self._limiter.hit(limit, label, *key):
                    continue
                stats = await self._limiter.get_window_stats(limit, label, *key)
            except StorageError:
                return Decision.deny(Unavailable("the rate limiter cannot be reached; try again shortly"))
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            whom = {"per_server": "this server", "per_principal": "you", "per_tool": f"you on {ctx.item.exposed_name}"}
            return Decision.deny(
                TooManyRequests(
                    f"rate limit reached for {whom[label]}: at most {limit}; retry in {retry_after} s",
                    retry_after=retry_after,
                ),
                detail={"limit": label},
            )
        return ALLOW

    def _item(self, rule: str) -> RateLimitItem:
        item = self._parsed.get(rule)
        if item is None:
            item = self._parsed[rule] = parse(rule)
        return item
