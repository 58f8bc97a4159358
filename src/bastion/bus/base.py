"""The Bus protocol, its event type, and the shared change epoch.

An event says *that* something changed (and what kind), never the new state:
receivers reload from the store, so a lost or duplicated event costs a reload,
not correctness.

Events make replicas refresh ahead of time; the shared epoch is what makes a
change binding on the next request everywhere. It is the store's own change
epoch (bumped in every write transaction), announced by whoever committed it:
a replica whose snapshot is older than the shared epoch reloads before it
decides, and one that cannot read the shared epoch refuses to decide.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Bus", "ChangeEvent", "EpochReader", "Handler", "SharedEpoch"]

Topic = Literal["catalog", "tokens", "users", "origin"]


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    topic: Topic
    subject_id: str | None = None
    # The store epoch the change reached, when the sender knew it: a receiver already at
    # that epoch (it caught up on a request first) can skip the reload.
    epoch: int | None = None


Handler = Callable[[ChangeEvent], Awaitable[None]]
EpochReader = Callable[[], Awaitable[int]]


class SharedEpoch(Protocol):
    """The newest store epoch any replica has announced, kept where every replica reads it."""

    async def read(self) -> int | None:
        """The announced epoch, or None when it cannot be vouched for (lost, or just reconnected):
        the caller must then reload from the store and announce what it loaded.
        Raises `Unavailable` when it cannot be read at all."""
        ...

    async def announce(self, epoch: int) -> None:
        """Raise the shared epoch to at least `epoch` (never lower it). Raises `Unavailable`."""
        ...


class Bus(Protocol):
    def subscribe(self, handler: Handler) -> None: ...

    async def publish(self, event: ChangeEvent) -> None:
        """Announce a committed change: to this process's subscribers before returning, and to
        other replicas. Call it after the store transaction commits, never inside it."""
        ...

    @property
    def shared_epoch(self) -> SharedEpoch | None:
        """None when this process is the only one that decides (the in-process bus)."""
        ...

    async def run(self) -> None:
        """Receive other replicas' events until cancelled; returns at once when there are none."""
        ...

    async def aclose(self) -> None: ...
