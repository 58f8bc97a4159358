"""Services: everything the planes share, built once per process and passed down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from sqlalchemy.exc import SQLAlchemyError

from bastion import __version__
from bastion.admin.control import Control
from bastion.admin.governance import Governance
from bastion.admin.policies import PolicyAdmin
from bastion.admin.users import Users
from bastion.audit.checkpoints import CheckpointPolicy
from bastion.bus import create_bus
from bastion.catalog.holder import SnapshotHolder
from bastion.catalog.snapshot import Snapshot
from bastion.config import Settings
from bastion.errors import Unavailable
from bastion.http.client_ip import ClientIp
from bastion.http.refusal_budget import RefusalBudget
from bastion.identity.bearer import BearerResolver
from bastion.identity.passwords import PasswordPolicy
from bastion.identity.token_rules import LocalQuota, TokenGate, UseQuota
from bastion.mcp.methods import Methods
from bastion.mcp.notify import ChangeNotifier
from bastion.mcp.origin_check import OriginPolicy
from bastion.mcp.session_limits import SessionLimits
from bastion.mcp.sessions import SessionStore
from bastion.mcp.transport import McpEndpoint
from bastion.mcp.upstream import ChildLimits, OriginGuard, OriginPool, StdioPolicy
from bastion.net.egress import EgressPolicy
from bastion.oauth.downstream_exchange import TokenExchanger
from bastion.oauth.downstream_grants import DownstreamGrants
from bastion.oauth.origin_tokens import OriginTokens
from bastion.observability.metrics import Gauge, Metrics
from bastion.observability.tracing import Tracing
from bastion.pipeline.approval import Approval
from bastion.pipeline.chain import BUILTIN, Pipeline
from bastion.pipeline.plugins import load_detectors, load_stages
from bastion.pipeline.rate_limit import RateLimit
from bastion.pipeline.windows import limiter_storage
from bastion.store.db import Database
from bastion.store.models import DEFAULT_TENANT
from bastion.store.repos.audit import AuditLog
from bastion.store.repos.downstream import SqlGrantStore
from bastion.store.repos.mcp_sessions import SqlSessionEnds, session_sealing_key
from bastion.store.repos.snapshot import OpenedCredentials, load_snapshot
from bastion.store.repos.token_uses import TokenUseWriter
from bastion.store.repos.vault import check_vault
from bastion.store.tenancy import SYSTEM
from bastion.web.authserver import AuthServer
from bastion.web.connect import connect_url
from bastion.web.ratelimit import RouteLimits

__all__ = ["Services"]

log = structlog.get_logger(__name__)


def _origin_guard(settings: Settings, tokens: OriginTokens, grants: DownstreamGrants) -> OriginGuard:
    """Where origins may be: the egress allowlist (shared with every outbound fetch) and the stdio
    allowlist; and the minter of the JWTs `jwt` origins receive."""
    return OriginGuard(
        tokens=tokens,
        grants=grants,
        egress=EgressPolicy(
            allow_hosts=tuple(settings.egress_allow_hosts), allow_cidrs=tuple(settings.egress_allow_cidrs)
        ),
        stdio=StdioPolicy(
            allowed=tuple(tuple(entry) for entry in settings.stdio_commands),
            limits=ChildLimits(
                data_bytes=settings.stdio_max_data_bytes,
                open_files=settings.stdio_max_open_files,
                cpu_seconds=settings.stdio_max_cpu_seconds,
            ),
        ),
    )


def _token_quota(settings: Settings) -> UseQuota:
    """API token quotas: counted in Redis when replicas share one (exact across them), else here."""
    if settings.redis_url is None:
        return LocalQuota()
    from bastion.bus.token_quota import RedisQuota  # no Redis client in a single-process deployment

    return RedisQuota(settings.redis_url, namespace=settings.redis_namespace, timeout=settings.redis_timeout_seconds)


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.db.vault = settings.master_keys()  # a malformed key or key file stops start-up here (VaultError)
        self.bus = create_bus(
            settings.redis_url,
            read_epoch=self.db.read_epoch,
            namespace=settings.redis_namespace,
            timeout=settings.redis_timeout_seconds,
        )
        self._opened = OpenedCredentials()  # origin credentials from one snapshot load to the next
        self.holder = SnapshotHolder(self._load_snapshot, self.db.read_epoch, shared=self.bus.shared_epoch)
        self._session_keys = settings.session_keys()  # a malformed BASTION_SESSION_KEY stops start-up here
        self.sessions = SessionStore(
            idle_seconds=settings.session_idle_seconds,
            lifetime_seconds=settings.session_lifetime_seconds,
            ends=SqlSessionEnds(self.db),
            max_local=settings.session_local_max,
        )
        # Signed with the authorization server's keys (published in its JWKS), read when minting:
        # a key rotation applies to the next token.
        # Rate limits, sign-in attempts, approvals' nonces: in Redis across replicas when set.
        self.limiter = limiter_storage(settings.redis_url, settings.redis_namespace, settings.redis_timeout_seconds)
        self.auth = AuthServer(
            settings=settings,
            db=self.db,
            bus=self.bus,
            holder=self.holder,
            issuer=settings.base_url(),
            enterprise_issuers=tuple(settings.enterprise_idps.items()),
            limiter=self.limiter,
        )
        # People's tokens at per-user OAuth origins: read through a cache, refreshed just in time.
        self.grants = DownstreamGrants(
            SqlGrantStore(self.db),
            lambda: self.db.vault,
            egress=self.auth.egress,
            ssl=self.auth.ssl_context,
            connect_url=lambda key, client: connect_url(self.auth, key, client),
        )
        self.auth.downstream = self.grants
        minter = OriginTokens(lambda: self.auth.keyring, settings.base_url())
        self.exchanger = TokenExchanger(minter, egress=self.auth.egress, ssl=self.auth.ssl_context)
        guard = _origin_guard(settings, minter, self.grants)
        self.pool = OriginPool(
            timeout=settings.upstream_timeout_seconds, max_bytes=settings.upstream_max_response_bytes, guard=guard
        )
        self.control = Control(
            db=self.db,
            bus=self.bus,
            pool=self.pool,
            stdio=guard.stdio,
            logins=self.auth.logins,
            base_url=settings.base_url(),
            egress=self.auth.egress,
            ssl_context=self.auth.ssl_context,
            hold_flagged=settings.poisoning_scan == "block",
        )
        self.limits = RouteLimits(
            {
                "authorize": settings.rate_limit_authorize,
                "registration": settings.rate_limit_registration,
                "sign-in": settings.rate_limit_sign_in,
                "token": settings.rate_limit_token,
            },
            self.limiter,
        )
        self.governance = Governance(self.db, self.bus)
        self.users = Users(
            self.db,
            self.bus,
            PasswordPolicy(min_length=settings.password_min_length),
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
        )
        # API tokens' own limits and their use log (the batch writer is started in `running`).
        self.client_ip = ClientIp(settings.trusted_proxies)
        # Refusals of control-plane requests nobody was identified for: recorded within a budget.
        self.request_refusals = RefusalBudget(
            settings.rate_limit_request_refusals, self.limiter, self.client_ip, label="request-refusals"
        )
        self.token_uses = TokenUseWriter(self.db, interval=settings.token_use_flush_seconds)
        # The audit trail: hash-chained per tenant, written in batches; forwarded calls wait for theirs.
        # Checkpoints of the chains are signed with the live key ring's active key.
        self.audit = AuditLog(
            self.db,
            settings.audit_journal_path(),
            store_interval=settings.audit_store_seconds,
            signer=lambda: self.auth.keyring,
            checkpoints=CheckpointPolicy(settings.audit_checkpoint_every, settings.audit_checkpoint_seconds),
        )
        # Metrics always (in memory, read at /metrics); traces only with an exporter configured.
        self.metrics = Metrics()
        self.metrics.gauges(self._gauges)
        self.tracing = Tracing(
            settings.otel_exporter,
            endpoint=settings.otel_endpoint,
            service=settings.otel_service_name,
            version=__version__,
        )
        # The policy pipeline around every forwarded call; its limiter shares Redis with the replicas.
        self.pipeline = Pipeline(
            RateLimit(self.limiter),
            approval=Approval(self.limiter),  # single-use approvals: one budget of nonces across replicas
            plugins=load_stages(BUILTIN),
            detectors=load_detectors(),
        )
        self.policies = PolicyAdmin(self.db, self.bus, self.pipeline.plugin_names)
        self.token_gate = TokenGate(quota=_token_quota(settings), log=self.token_uses, client_address=self.client_ip)
        self.endpoint = McpEndpoint(
            holder=self.holder,
            sessions=self.sessions,
            methods=Methods(
                self.pool,
                self.grants,
                self.exchanger,
                self.audit,
                self.metrics,
                self.tracing,
                store_first=settings.audit_store_first,
                pipeline=self.pipeline if settings.pipeline else None,
            ),
            origins=OriginPolicy(settings.allowed_origins, exact=settings.cors_origins),  # listed for CORS: allowed
            bearer=BearerResolver(self.auth.store.access_principal),
            base_url=settings.base_url(),
            max_body_bytes=settings.max_body_bytes,
            max_json_depth=settings.max_json_depth,
            gate=self.token_gate,
            limits=SessionLimits(settings.rate_limit_mcp_sessions, settings.mcp_streams_per_token, self.limiter),
            refusals=RefusalBudget(settings.rate_limit_mcp_refusals, self.limiter, self.client_ip),
            audit=self.audit,
            fallback_tenant=DEFAULT_TENANT,
            metrics=self.metrics,
        )
        self._tasks: TaskGroup | None = None
        self._refreshing: set[str] = set()

    def _gauges(self) -> list[Gauge]:
        queued, unstored = self.audit.backlog()
        checked_out = getattr(self.db.engine.pool, "checkedout", None)  # not every pool class counts
        return [
            ("bastion_mcp_sessions", "MCP sessions open on this replica", self.sessions.count()),
            ("bastion_origin_clients", "Origins with a live client (HTTP pool or stdio process)", self.pool.count()),
            ("bastion_audit_queued_records", "Audit records waiting for the journal", queued),
            ("bastion_audit_unstored_records", "Audit records journaled but not yet in the store", unstored),
            (
                "bastion_db_connections_in_use",
                "Database connections checked out of the pool",
                checked_out() if callable(checked_out) else 0,
            ),
            ("bastion_snapshot_epoch", "The store epoch this replica's snapshot reflects", self.holder.current.epoch),
        ]

    async def _load_snapshot(self) -> Snapshot:
        try:
            async with self.db.session(SYSTEM) as session:
                return await load_snapshot(session, self.db.vault, self._opened)
        except (SQLAlchemyError, OSError) as exc:
            # A request waiting on this reload is refused (503), never decided on the old snapshot.
            raise Unavailable(
                "cannot confirm that access rules are current: the store is unreachable; retry shortly"
            ) from exc

    @asynccontextmanager
    async def running(self, *, poll_epoch: bool = True) -> AsyncIterator[Services]:
        """Start the background parts (origin readers, epoch poll); stop them on exit.

        First of all, this process takes the audit journal directory: a second server on it is
        refused (AuditUnavailable) before it starts anything. Then every sealed secret in the store
        must open with the configured master keys (VaultError otherwise): nothing is read, served
        or written with a missing or wrong key.
        """
        self.audit.hold_directory()
        try:
            async with self._started(poll_epoch=poll_epoch):
                yield self
        finally:
            self.audit.release_directory()

    @asynccontextmanager
    async def _started(self, *, poll_epoch: bool) -> AsyncIterator[None]:
        await check_vault(self.db, self.db.vault)
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            self.pool.attach(tasks)
            self.bus.subscribe(self.holder.handle_event)
            self.holder.on_change(self.pool.sync)
            self.holder.on_change(ChangeNotifier(self.sessions, self.auth.store.live_access_tokens).on_snapshot)
            self.holder.on_change(self._reload_signing_keys)
            self.pool.on_notification(self._on_origin_notification)
            await self.holder.refresh()
            await self.auth.start()
            # Every replica must seal with the same key: configured, or the one kept in the store.
            session_keys = self._session_keys or [await session_sealing_key(self.db)]
            await self.sessions.start(session_keys)
            self.pipeline.approval.use_key(session_keys[0])  # approval states verify on every replica
            tasks.start_soon(self.bus.run)  # other replicas' events (returns at once in-process)
            tasks.start_soon(self.token_uses.run)  # the API token use log, written in batches
            tasks.start_soon(self.audit.run)  # a crashed process's journal first, then records as they come
            if poll_epoch:
                tasks.start_soon(self.holder.poll_epoch, self.settings.epoch_poll_seconds)
                tasks.start_soon(self.sessions.follow_ends, self.settings.epoch_poll_seconds)
            try:
                yield
            finally:
                with anyio.CancelScope(shield=True):
                    await self.pool.aclose()
                    await self.token_uses.aclose()  # what is still queued reaches the store
                    await self.audit.aclose()
                tasks.cancel_scope.cancel()
        await self.token_gate.aclose()
        self.tracing.shutdown()  # exports the spans still batched
        await self.bus.aclose()
        await self.limiter.aclose()
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
            await self.control.rediscover(origin_id)
        except Exception as exc:  # top of a background task: a failed rediscovery
            # (origin deleted meanwhile, store unreachable) must not stop the server.
            log.warning("rediscovery_failed", origin_id=origin_id, error=type(exc).__name__)
        finally:
            self._refreshing.discard(origin_id)
