"""In-process bus: delivers each event to every subscriber before publish returns."""

from __future__ import annotations

from bastion.bus.base import ChangeEvent, Handler, SharedEpoch

__all__ = ["MemoryBus"]


class MemoryBus:
    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def publish(self, event: ChangeEvent) -> None:
        # Awaited in order so that, when a control-plane write returns, every
        # snapshot in this process already reflects it.
        for handler in self._handlers:
            await handler(event)

    @property
    def shared_epoch(self) -> SharedEpoch | None:
        # One process decides alone: its own snapshot is the freshest there is
        # (other processes' writes, such as the CLI's, arrive through the epoch poll).
        return None

    async def run(self) -> None:
        return None  # nothing arrives from outside this process

    async def aclose(self) -> None:
        return None
