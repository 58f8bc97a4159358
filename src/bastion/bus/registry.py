"""The one place that picks the bus: Redis when `BASTION_REDIS_URL` is set, else in-process."""

from __future__ import annotations

from bastion.bus.base import Bus, EpochReader
from bastion.bus.memory import MemoryBus

__all__ = ["create_bus"]


def create_bus(redis_url: str | None, *, read_epoch: EpochReader, namespace: str, timeout: float) -> Bus:
    """`read_epoch` reads the store's change epoch: the Redis bus announces it after each commit."""
    if redis_url is None:
        return MemoryBus()
    # Imported here so a single-process deployment never loads the Redis client.
    from bastion.bus.redis import RedisBus

    return RedisBus(redis_url, read_epoch=read_epoch, namespace=namespace, timeout=timeout)
