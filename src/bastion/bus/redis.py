"""Redis bus: change events over pub/sub and the shared epoch in one key, for replica sets.

Two names under `BASTION_REDIS_NAMESPACE`: `{ns}:epoch` holds the newest store epoch anyone
announced, `{ns}:changes` carries events. Publishing raises the key and publishes the event in
one Lua script (atomic, one round trip), after the store transaction committed: any request
that starts after the writer's call returned reads an epoch at least as new as the change.

The key holds the store's own epoch rather than a counter of its own, so Redis can only cause
extra reloads, never a missed one: a key lost in a Redis restart reads as None (reload), and
every reload re-announces the epoch it loaded. Until this process has announced after its last
Redis failure, `read()` answers None too, because events sent meanwhile are lost.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any, Protocol, cast, get_args

import anyio
import orjson
import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from bastion.bus.base import ChangeEvent, EpochReader, Handler, SharedEpoch, Topic
from bastion.bus.redis_epoch import EpochReader as FastEpochReader
from bastion.bus.redis_epoch import supports
from bastion.errors import Unavailable

__all__ = ["RedisBus"]

log = structlog.get_logger(__name__)

_TOPICS = frozenset(get_args(Topic))
_UNREACHABLE = "cannot confirm that access rules are current: Redis (the change bus) is unreachable; retry shortly"
# Only this replica may have lost Redis: the others, still trusting the shared epoch, learn of the
# change from the store's epoch poll, or from this replica's announcement once it reaches Redis.
_NOT_TOLD = (
    "the change is saved, but other replicas could not be told at once (Redis is unreachable from here); "
    "they apply it at their next poll of the store (BASTION_EPOCH_POLL_SECONDS)"
)

# KEYS: epoch key, channel. ARGV: epoch, message ('' = announce only). Never lowers the key.
_ANNOUNCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
local epoch = tonumber(ARGV[1])
if epoch > current then redis.call('SET', KEYS[1], ARGV[1]) end
if ARGV[2] ~= '' then redis.call('PUBLISH', KEYS[2], ARGV[2]) end
return 1
"""


class _KeyReader(Protocol):
    async def get(self) -> bytes | None: ...

    async def aclose(self) -> None: ...


class _LibraryReader:
    """The epoch GET through redis-py, for URLs the dedicated reader does not handle."""

    def __init__(self, client: Redis, key: str) -> None:
        self._client = client
        self._key = key

    async def get(self) -> bytes | None:
        value = await self._client.get(self._key)
        return value.encode() if isinstance(value, str) else value

    async def aclose(self) -> None:
        return None  # the client is closed by its owner


class RedisBus:
    def __init__(
        self, url: str, *, read_epoch: EpochReader, namespace: str, timeout: float, retry_delay: float = 0.2
    ) -> None:
        # One immediate retry: a pooled connection that died with a Redis restart is replaced
        # at once; a Redis that is really gone costs one refused connect, not a backoff.
        self._redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1)
        )
        # The subscriber gets no silent reconnects: every break must reach `run`, because
        # events sent while it was away are lost and the process has to resynchronize.
        self._listener = Redis.from_url(url, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        self._script = self._redis.register_script(_ANNOUNCE)
        self._key = f"{namespace}:epoch"
        # The per-request GET, on its own connection (see redis_epoch.py for the measurements).
        self._epoch: _KeyReader = (
            FastEpochReader(url, self._key, timeout=timeout)
            if supports(url)
            else _LibraryReader(self._redis, self._key)
        )
        self._channel = f"{namespace}:changes"
        self._read_epoch = read_epoch
        self._retry_delay = retry_delay
        self._sender = secrets.token_hex(8)
        self._handlers: list[Handler] = []
        self._vouched = False  # an announcement succeeded since the last Redis failure
        self._failures = 0  # Redis failures seen: an announcement vouches only if none came meanwhile
        self._healthy = True  # for logging transitions only, not every refused request
        self.listening = anyio.Event()  # set while subscribed (tests wait on it)

    # --- Bus -------------------------------------------------------------------------------
    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    @property
    def shared_epoch(self) -> SharedEpoch:
        return self

    async def publish(self, event: ChangeEvent) -> None:
        try:
            epoch = await self._read_epoch()
        except Exception:  # whatever the store raised, re-raised below after the withdrawal
            # The change committed but its epoch is unknown: withdraw the shared epoch, so every
            # replica reloads from the store (or refuses) instead of trusting the old value.
            await self._withdraw()
            raise
        event = replace(event, epoch=epoch)
        message = {"topic": event.topic, "subject_id": event.subject_id, "epoch": epoch, "sender": self._sender}
        failure: Unavailable | None = None
        failures = self._failures
        try:
            await self._script(keys=[self._key, self._channel], args=[epoch, orjson.dumps(message)])
            self._vouched = self._vouched or failures == self._failures
        except (RedisError, OSError) as exc:
            self._lost("publish", exc)
            failure = Unavailable(_NOT_TOLD)
        # This process's snapshots reflect the change when publish returns, even if Redis failed.
        for handler in self._handlers:
            await handler(event)
        if failure is not None:
            raise failure

    async def run(self) -> None:
        resync = False
        while True:
            try:
                await self._listen(resync=resync)
            except (RedisError, OSError) as exc:
                self._lost("subscribe", exc)
            self.listening = anyio.Event()
            resync = True
            await anyio.sleep(self._retry_delay)  # a pause between reconnect attempts, not a wait for state

    async def aclose(self) -> None:
        await self._epoch.aclose()
        await self._redis.aclose()
        await self._listener.aclose()

    # --- SharedEpoch -----------------------------------------------------------------------
    async def read(self) -> int | None:
        try:
            raw = await self._epoch.get()
        except (RedisError, OSError, EOFError) as exc:
            self._lost("read", exc)
            raise Unavailable(_UNREACHABLE) from None
        if raw is None or not self._vouched:
            return None
        return int(raw)

    async def announce(self, epoch: int) -> None:
        failures = self._failures
        if not self._vouched:
            # Vouching again after a failure: announce the store's epoch as of now, not only what a
            # load that may predate the failure saw, so changes whose announcements failed are covered.
            try:
                epoch = max(epoch, await self._read_epoch())
            except Exception as exc:  # the store's own error types are not this package's to import
                raise Unavailable("cannot confirm that access rules are current: the store is unreachable") from exc
        try:
            await self._script(keys=[self._key, self._channel], args=[epoch, b""])
        except (RedisError, OSError) as exc:
            self._lost("announce", exc)
            raise Unavailable(_UNREACHABLE) from None
        self._vouched = self._vouched or failures == self._failures
        if not self._healthy:
            self._healthy = True
            log.info("redis_bus_recovered", epoch=epoch)

    # --- helpers ---------------------------------------------------------------------------
    async def _listen(self, *, resync: bool) -> None:
        pubsub = self._listener.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._channel)
            if resync:
                # Events published while we were away are lost: reload once (the snapshot holder
                # re-announces what it loaded, which also restores a key lost with Redis).
                await self._deliver(ChangeEvent("catalog"))
            self.listening.set()
            async for message in pubsub.listen():
                event = self._decode(message)
                if event is not None:
                    await self._deliver(event)
        finally:
            with anyio.CancelScope(shield=True):
                await cast(Any, pubsub).aclose()  # unannotated before redis-py 8.2, annotated since

    def _decode(self, message: dict[str, Any]) -> ChangeEvent | None:
        if message.get("type") != "message":
            return None
        try:
            data = orjson.loads(message["data"])
        except orjson.JSONDecodeError:
            log.warning("redis_bus_bad_message")
            return None
        if not isinstance(data, dict) or data.get("sender") == self._sender or data.get("topic") not in _TOPICS:
            return None  # our own events were delivered in publish; foreign shapes are ignored
        subject, epoch = data.get("subject_id"), data.get("epoch")
        return ChangeEvent(
            data["topic"],
            subject if isinstance(subject, str) else None,
            epoch if isinstance(epoch, int) else None,
        )

    async def _deliver(self, event: ChangeEvent) -> None:
        for handler in self._handlers:
            try:
                await handler(event)
            except Exception as exc:  # top of the subscriber task: a failed reload (store down)
                # must not stop it; requests compare epochs and reload or refuse on their own.
                log.warning("redis_bus_handler_failed", topic=event.topic, error=type(exc).__name__)

    async def _withdraw(self) -> None:
        try:
            await self._redis.delete(self._key)
        except (RedisError, OSError) as exc:
            self._lost("withdraw", exc)

    def _lost(self, during: str, exc: BaseException) -> None:
        self._vouched = False
        self._failures += 1
        if self._healthy:
            self._healthy = False
            log.warning("redis_bus_unreachable", during=during, error=type(exc).__name__)
