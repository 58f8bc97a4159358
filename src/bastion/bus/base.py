"""The Bus protocol and its event type.

An event says *that* something changed (and what kind), never the new state:
receivers reload from the store, so a lost or duplicated event costs a reload,
not correctness.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Bus", "ChangeEvent", "Handler"]

Topic = Literal["catalog", "tokens", "users", "origin"]


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    topic: Topic
    subject_id: str | None = None


Handler = Callable[[ChangeEvent], Awaitable[None]]


class Bus(Protocol):
    def subscribe(self, handler: Handler) -> None: ...

    async def publish(self, event: ChangeEvent) -> None: ...
