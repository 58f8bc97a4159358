"""In-process bus: delivers each event to every subscriber before publish returns."""

from __future__ import annotations

from bastion.bus.base import ChangeEvent, Handler

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
