"""Keeps the current Snapshot fresh, and proves it fresh before a decision.

Triggers: a change event on the bus (writes in this process or, with the Redis
bus, in any replica), a cheap poll of the store's change epoch (writes made by
processes without the Redis bus), and, with a shared epoch, the per-request
check in `checked()`: a snapshot older than the shared epoch is reloaded before
the request is decided, and a request whose freshness cannot be confirmed is
refused (`Unavailable`). A refresh builds a new snapshot and swaps one
reference; readers never see a half-built one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import structlog

from bastion.bus.base import ChangeEvent, SharedEpoch
from bastion.catalog.snapshot import Snapshot
from bastion.errors import Unavailable

__all__ = ["SnapshotHolder"]

log = structlog.get_logger(__name__)

Loader = Callable[[], Awaitable[Snapshot]]
EpochReader = Callable[[], Awaitable[int]]
Listener = Callable[[Snapshot, Snapshot], Awaitable[None]]


class SnapshotHolder:
    def __init__(self, load: Loader, read_epoch: EpochReader, *, shared: SharedEpoch | None = None) -> None:
        self._load = load
        self._read_epoch = read_epoch
        self._shared = shared
        self._lock = anyio.Lock()
        self._listeners: list[Listener] = []
        self._loads = 0  # loads started, numbered under the lock
        self._fresh_from = 0  # the number of the newest load that succeeded
        self._failed_from = 0  # the number of the newest load that failed
        # A load failed after the last one that succeeded: a change may be missing from `current`
        # (one this process committed itself, whose reload then failed, among them).
        self._behind = False
        self._ahead_warned = False
        self.current: Snapshot = Snapshot.empty()

    def on_change(self, listener: Listener) -> None:
        """Call `listener(old, new)` after each swap (sessions use it to emit list_changed)."""
        self._listeners.append(listener)

    async def refresh(self) -> Snapshot:
        async with self._lock:
            old, new = self.current, await self._load_locked()
        await self._swapped(old, new)
        return new

    async def checked(self) -> Snapshot:
        """The snapshot to decide a request with: no older than the shared epoch.

        Steady state: one read of the shared epoch and an integer comparison. Behind it: one
        reload, shared by every request that waited for it, its failure too. Raises
        `Unavailable` when the shared epoch cannot be read or the store cannot be loaded: never
        a guess. Without a shared epoch (one process), the snapshot is current unless its last
        load failed: then it is loaded again, or the request refused.
        """
        shared: int | None = None
        if self._shared is None:
            if not self._behind:
                return self.current
        else:
            shared = await self._shared.read()
            if shared is not None and shared <= self.current.epoch and not self._behind:
                return self.current
        # Any load numbered above the ticket started after the read returned, so after every
        # change the read saw (or, for None, after the moment we stopped trusting the value).
        ticket = self._loads
        async with self._lock:
            if self._fresh_from > ticket or (shared is not None and shared <= self.current.epoch and not self._behind):
                return self.current
            if self._failed_from > ticket:
                # That load was this request's as much as its own: waiting in turn to try again
                # would cost each waiter the store's timeout, one after another.
                raise Unavailable("cannot confirm that access rules are current: the store could not be loaded")
            old, new = self.current, await self._load_locked()
        if shared is not None and new.epoch < shared:
            self._warn_ahead(shared, new.epoch)
        await self._swapped(old, new)
        return new

    async def handle_event(self, event: ChangeEvent) -> None:
        if event.epoch is not None and event.epoch <= self.current.epoch:
            return  # a request already caught up with this change
        await self.refresh()

    async def _load_locked(self) -> Snapshot:
        self._loads += 1
        number = self._loads
        try:
            self.current = await self._load()
        except Exception:  # not a cancellation: the next waiter loads in its place
            self._failed_from, self._behind = number, True
            raise
        self._fresh_from, self._behind = number, False
        return self.current

    async def _swapped(self, old: Snapshot, new: Snapshot) -> None:
        if self._shared is not None:
            try:
                # Re-announcing what we loaded heals a lost announcement (a writer without the
                # Redis bus, a publish that failed, a key lost with a Redis restart).
                await self._shared.announce(new.epoch)
            except Unavailable:
                pass  # the bus logged it; the next request's read refuses or reloads
        # Each listener on its own: one that fails (a store read that timed out, an origin slow to
        # close) must not keep the next from acting on the change (the one that ends a revoked
        # token's streams among them), nor fail the request that happened to load it.
        for listener in self._listeners:
            try:
                await listener(old, new)
            except Exception as exc:
                log.error(
                    "snapshot_listener_failed",
                    listener=getattr(listener, "__qualname__", "?"),
                    error=type(exc).__name__,
                )

    def _warn_ahead(self, shared: int, loaded: int) -> None:
        # Still correct (each request reloads from the store), only slow: say so once.
        if not self._ahead_warned:
            self._ahead_warned = True
            log.warning(
                "shared_epoch_ahead_of_store",
                shared=shared,
                store=loaded,
                hint="another deployment shares BASTION_REDIS_NAMESPACE, or the database was restored: "
                "delete the Redis key <namespace>:epoch",
            )

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
