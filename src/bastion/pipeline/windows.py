"""Where rate-limit windows are counted: in this process, or in Redis shared by every replica.

One interface (`Windows`: `hit`, `get_window_stats`) over the `limits` library's strategies, with
two sibling backends chosen by `limiter_storage`:

- memory: the library's synchronous storage and strategies. Its asynchronous in-memory storage
  starts an expiry task on every hit once the last one finished, and moves each moving-window
  key's trimming to a worker thread: where each call yields to the event loop, as in the server,
  a task and a thread hop per call. Measured with the loop yielding between hits, a sliding-
  window hit cost 14 µs of CPU, 29 µs once any moving-window key existed (a sign-in); the
  synchronous storage costs 5 µs a hit in a tight loop. That storage drops expired entries on a
  `threading.Timer` it starts anew whenever the last one ended, 10 ms after a hit: under a steady
  trickle of calls, a new thread every 10 ms. `_SweptInline` drops them inline instead, at most
  once a second (reads already ignore expired counters): with hits 4 ms apart, as at concurrency
  1 in `make bench`, 156 µs of CPU less per hit (298 against 142, the loop's sleep included);
- Redis: the library's asynchronous Redis storage over a connection pool Bastion owns (and closes).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import limits.storage
import limits.strategies
from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.util import WindowStats
from redis.asyncio import ConnectionPool

from bastion.errors import Unavailable

__all__ = ["LimiterStorage", "Windows", "limiter_storage", "spend"]


class Windows(Protocol):
    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool: ...

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats: ...

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None: ...


class _SweptInline(limits.storage.MemoryStorage):
    """`limits`' memory storage with its expiry sweep run inline, at most once a second, instead of
    on a new timer thread 10 ms after hits (see the module's docstring for the measurement)."""

    _SWEEP_EVERY = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.timer.cancel()  # the one the constructor started
        self._next_sweep = 0.0

    # The storage's private scheduling hook (name-mangled), called before every counter change.
    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.time()
        if now >= self._next_sweep:
            self._next_sweep = now + self._SWEEP_EVERY
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]
            # `limits` 5.8 empties a moving window's expired key but keeps the key: every client
            # address that ever signed in stayed, and each sweep walked them all (100,000 addresses:
            # 21 MB, and a sweep held the event loop for 291 ms).
            for key in [key for key, entries in self.events.items() if not entries]:
                del self.events[key]


class _InProcess:
    """A synchronous `limits` strategy behind the async interface (it never blocks: dict operations)."""

    def __init__(self, strategy: limits.strategies.RateLimiter) -> None:
        self._strategy = strategy

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        return self._strategy.hit(item, *identifiers)

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        return self._strategy.get_window_stats(item, *identifiers)

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        self._strategy.clear(item, *identifiers)


@dataclass(frozen=True)
class LimiterStorage:
    """The windows' storage: in memory (`memory`) or in Redis (`redis`, with its connections)."""

    memory: limits.storage.MemoryStorage | None = None
    redis: RedisStorage | None = None
    connections: ConnectionPool | None = None

    def sliding(self) -> Windows:
        """Sliding-window counters: two counters per key, whatever the limit."""
        if self.redis is not None:
            return SlidingWindowCounterRateLimiter(self.redis)
        assert self.memory is not None
        return _InProcess(limits.strategies.SlidingWindowCounterRateLimiter(self.memory))

    def moving(self) -> Windows:
        """Moving windows: exact, one entry per hit (for small limits: sign-in, single-use nonces)."""
        if self.redis is not None:
            return MovingWindowRateLimiter(self.redis)
        assert self.memory is not None
        return _InProcess(limits.strategies.MovingWindowRateLimiter(self.memory))

    async def aclose(self) -> None:
        if self.connections is not None:
            await self.connections.aclose()


async def spend(windows: Windows, item: RateLimitItem, *identifiers: str, counted: str = "rate limits") -> int | None:
    """One hit: None within the limit, else the seconds until the window frees up (for Retry-After).
    Unavailable when the storage cannot be reached: a limit that cannot be counted refuses."""
    try:
        if await windows.hit(item, *identifiers):
            return None
        stats = await windows.get_window_stats(item, *identifiers)
    except StorageError:
        raise Unavailable(
            f"{counted} cannot be checked right now: the rate limiter cannot be reached; try again shortly"
        ) from None
    return max(1, math.ceil(stats.reset_time - time.time()))


def limiter_storage(redis_url: str | None, namespace: str, timeout: float) -> LimiterStorage:
    """In memory on a single node; in Redis (one budget for every replica) when one is shared."""
    if redis_url is None:
        return LimiterStorage(memory=_SweptInline())
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
    return LimiterStorage(redis=storage, connections=connections)
