"""Keeps the current Snapshot fresh.

Three triggers: a change event on the bus (writes in this process or, with the
Redis bus, in any replica), and a cheap poll of the store's change epoch (writes
made by other processes such as the CLI). A refresh builds a new snapshot and
swaps one reference; readers never see a half-built one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import structlog

from bastion.bus.base import ChangeEvent
from bastion.catalog.snapshot import Snapshot

__all__ = ["SnapshotHolder"]

log = structlog.get_logger(__name__)

Loader = Callable[[], Awaitable[Snapshot]]
EpochReader = Callable[[], Awaitable[int]]
Listener = Callable[[Snapshot, Snapshot], Awaitable[None]]


class SnapshotHolder:
    def __init__(self, load: Loader, read_epoch: EpochReader) -> None:
        self._load = load
        self._read_epoch = read_epoch
        self._lock = anyio.Lock()
        self._listeners: list[Listener] = []
        self.current: Snapshot = Snapshot.empty()

    def on_change(self, listener: Listener) -> None:
        """Call `listener(old, new)` after each swap (sessions use it to emit list_changed)."""
        self._listeners.append(listener)

    async def refresh(self) -> Snapshot:
        async with self._lock:
            old, new = self.current, await self._load()
            self.current = new
        for listener in self._listeners:
            await listener(old, new)
        return new

    async def handle_event(self, _event: ChangeEvent) -> None:
        await self.refresh()

    async def poll_epoch(self, interval: float) -> None:
        """Run forever: refresh whenever the store's epoch moved past ours."""
        while True:
            await anyio.sleep(interval)
            try:
                if await self._read_epoch() != self.current.epoch:
                    await self.refresh()
            except Exception as exc:  # top of a background task: the store may be
                # briefly unreachable; keep serving the last snapshot and try again next tick.
                log.warning("epoch_poll_failed", error=type(exc).__name__)
