"""One long-lived client per origin, shared by every call and every virtual server."""

from __future__ import annotations

from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from bastion.catalog.param_headers import ParamHeaders
from bastion.catalog.snapshot import OriginSpec, Snapshot
from bastion.errors import UpstreamUnavailable
from bastion.mcp.upstream.base import NotificationSink, OriginClient, OriginGuard
from bastion.mcp.upstream.http import HttpOriginClient
from bastion.mcp.upstream.stdio import StdioOriginClient

__all__ = ["OriginPool"]

log = structlog.get_logger(__name__)

_IMPLEMENTATIONS: dict[str, type[HttpOriginClient] | type[StdioOriginClient]] = {
    "http": HttpOriginClient,
    "stdio": StdioOriginClient,
}


class OriginPool:
    def __init__(self, *, timeout: float, max_bytes: int, guard: OriginGuard) -> None:
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._guard = guard
        self._tasks: TaskGroup | None = None
        self._clients: dict[str, OriginClient] = {}
        self._made_at: dict[str, int] = {}  # origin id → the snapshot epoch its client was made for
        self._synced = -1  # the epoch of the newest snapshot `sync` saw, and its origins
        self._origins: dict[str, OriginSpec] = {}
        self._retiring: set[OriginClient] = set()  # replaced, closed once their calls had their time
        self._listeners: list[NotificationSink] = []
        # origin id → tool name → the `Mcp-Param-*` headers its schema declares (from the snapshot)
        self._param_headers: dict[str, dict[str, ParamHeaders]] = {}

    def count(self) -> int:
        """Origins with a live client (an HTTP pool or a stdio process)."""
        return len(self._clients)

    def attach(self, task_group: TaskGroup) -> None:
        """Give the pool the task group its connections' reader tasks live in."""
        self._tasks = task_group

    def on_notification(self, sink: NotificationSink) -> None:
        self._listeners.append(sink)

    def client(self, spec: OriginSpec, epoch: int | None = None) -> OriginClient:
        """The client for `spec`, as the snapshot of `epoch` has it (None: as stored now, for
        discovery). A request decided on an older snapshot than one the pool has seen gets the
        origin as configured since: never a client that replaces a newer one (a stdio process
        restarted, an old URL or credential brought back until the next request)."""
        if epoch is not None and epoch < self._synced:
            newer = self._origins.get(spec.id)
            if newer is None:
                raise UpstreamUnavailable(f"origin {spec.name!r} was removed meanwhile")
            spec, epoch = newer, self._synced
        current = self._clients.get(spec.id)
        if current is not None and current.spec == spec:
            return current
        if current is not None and epoch is not None and self._made_at.get(spec.id, -1) > epoch:
            return current  # made for a newer snapshot than this request's
        if self._tasks is None:
            raise UpstreamUnavailable("the origin pool is not running")
        if spec.transport not in _IMPLEMENTATIONS:
            raise UpstreamUnavailable(f"origin {spec.name!r} uses unknown transport {spec.transport!r}")
        client = _IMPLEMENTATIONS[spec.transport](
            spec,
            timeout=self._timeout,
            max_bytes=self._max_bytes,
            notify=self._fan_out,
            task_group=self._tasks,
            guard=self._guard,
        )
        client.param_headers = self._param_headers.get(spec.id, {})
        self._clients[spec.id] = client
        self._made_at[spec.id] = -1 if epoch is None else epoch
        if current is not None:
            # A request with a changed origin got here before `sync` did (the snapshot is
            # published before its listeners run), or one with the previous snapshot after it.
            # Unclosed, the replaced client's process or streams outlived it for good.
            self._retire(current)
        return client

    def _retire(self, client: OriginClient) -> None:
        """Close a replaced client once the calls it carries have had their time (the origin
        timeout), not at once: a call still under way on it ends as it would have."""
        assert self._tasks is not None
        self._retiring.add(client)

        async def close_later() -> None:
            try:
                await anyio.sleep(getattr(client, "timeout", self._timeout))  # the origin's own, if set
            finally:
                if client in self._retiring:  # not closed by the pool's own `aclose` meanwhile
                    self._retiring.discard(client)
                    with anyio.CancelScope(shield=True):
                        await client.aclose()

        self._tasks.start_soon(close_later)

    async def sync(self, _old: Snapshot, new: Snapshot) -> None:
        """Close clients whose origin was removed or reconfigured; give the rest their tools' headers.
        Listeners run outside the snapshot holder's lock: a sync for an older snapshot than one seen
        already changes nothing (it would close the newer clients and bring back old headers)."""
        if new.epoch < self._synced:
            return
        declared: dict[str, dict[str, ParamHeaders]] = {}
        for server in new.servers.values():
            for route in server.tools.values():
                if route.param_headers:
                    declared.setdefault(route.origin_id, {})[route.upstream_name] = route.param_headers
        self._param_headers = declared
        self._synced, self._origins = new.epoch, dict(new.origins)
        for origin_id, client in list(self._clients.items()):
            if self._made_at.get(origin_id, -1) > new.epoch:
                continue  # made for a snapshot newer than this one, whose own sync is still to come
            if new.origins.get(origin_id) != client.spec:
                del self._clients[origin_id]
                self._made_at.pop(origin_id, None)
                await client.aclose()
            else:
                client.param_headers = declared.get(origin_id, {})

    async def aclose(self) -> None:
        clients, self._clients = [*self._clients.values(), *self._retiring], {}
        self._retiring.clear()
        for client in clients:
            await client.aclose()

    async def _fan_out(self, origin_id: str, method: str, params: dict[str, Any]) -> None:
        for sink in self._listeners:
            await sink(origin_id, method, params)
