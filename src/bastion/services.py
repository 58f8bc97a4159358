"""Services: everything the planes share, built once per process and passed down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from bastion.admin.control import Control
from bastion.admin.users import Users
from bastion.bus import MemoryBus
from bastion.catalog.holder import SnapshotHolder
from bastion.catalog.snapshot import Snapshot
from bastion.config import Settings
from bastion.identity.bearer import BearerResolver
from bastion.identity.passwords import PasswordPolicy
from bastion.mcp.methods import Methods
from bastion.mcp.notify import ChangeNotifier
from bastion.mcp.origin_check import OriginPolicy
from bastion.mcp.sessions import SessionStore
from bastion.mcp.transport import McpEndpoint
from bastion.mcp.upstream import OriginPool
from bastion.store.db import Database
from bastion.store.repos.snapshot import load_snapshot
from bastion.web.authserver import AuthServer
from bastion.web.ratelimit import RouteLimits

__all__ = ["Services"]

log = structlog.get_logger(__name__)


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.bus = MemoryBus()
        self.holder = SnapshotHolder(self._load_snapshot, self.db.read_epoch)
        self.sessions = SessionStore(settings.session_idle_seconds)
        self.pool = OriginPool(
            timeout=settings.upstream_timeout_seconds, max_bytes=settings.upstream_max_response_bytes
        )
        self.auth = AuthServer(
            settings=settings,
            db=self.db,
            bus=self.bus,
            holder=self.holder,
            issuer=settings.base_url(),
            enterprise_issuers=tuple(settings.enterprise_idps.items()),
        )
        self.control = Control(
            db=self.db, bus=self.bus, pool=self.pool, logins=self.auth.logins, base_url=settings.base_url()
        )
        self.limits = RouteLimits(
            {
                "registration": settings.rate_limit_registration,
                "sign-in": settings.rate_limit_sign_in,
                "token": settings.rate_limit_token,
            }
        )
        self.users = Users(
            self.db,
            PasswordPolicy(min_length=settings.password_min_length),
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
        )
        self.endpoint = McpEndpoint(
            holder=self.holder,
            sessions=self.sessions,
            methods=Methods(self.pool),
            origins=OriginPolicy(settings.allowed_origins),
            bearer=BearerResolver(self.auth.store.access_principal),
            base_url=settings.base_url(),
            max_body_bytes=settings.max_body_bytes,
            max_json_depth=settings.max_json_depth,
        )
        self._tasks: TaskGroup | None = None
        self._refreshing: set[str] = set()

    async def _load_snapshot(self) -> Snapshot:
        async with self.db.session() as session:
            return await load_snapshot(session)

    @asynccontextmanager
    async def running(self, *, poll_epoch: bool = True) -> AsyncIterator[Services]:
        """Start the background parts (origin readers, epoch poll); stop them on exit."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            self.pool.attach(tasks)
            self.bus.subscribe(self.holder.handle_event)
            self.holder.on_change(self.pool.sync)
            self.holder.on_change(ChangeNotifier(self.sessions).on_snapshot)
            self.holder.on_change(self._reload_signing_keys)
            self.pool.on_notification(self._on_origin_notification)
            await self.holder.refresh()
            await self.auth.start()
            if poll_epoch:
                tasks.start_soon(self.holder.poll_epoch, self.settings.epoch_poll_seconds)
            try:
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    await self.pool.aclose()
                tasks.cancel_scope.cancel()
        await self.db.close()

    async def _reload_signing_keys(self, _old: Snapshot, _new: Snapshot) -> None:
        # A rotation (CLI or another replica) bumps the epoch; keys are few, reloading is cheap.
        await self.auth.start()

    async def _on_origin_notification(self, origin_id: str, method: str, _params: dict[str, Any]) -> None:
        # An origin's list changed: rediscover it in the background (never inside the
        # origin's reader task, which the rediscovery's own replies must pass through).
        if self._tasks is None or origin_id in self._refreshing:
            return
        self._refreshing.add(origin_id)
        self._tasks.start_soon(self._rediscover, origin_id)

    async def _rediscover(self, origin_id: str) -> None:
        try:
            await self.control.refresh_origin(origin_id)
        except Exception as exc:  # top of a background task: a failed rediscovery
            # (origin deleted meanwhile, store unreachable) must not stop the server.
            log.warning("rediscovery_failed", origin_id=origin_id, error=type(exc).__name__)
        finally:
            self._refreshing.discard(origin_id)
