"""People's connections to per-user OAuth origins: grants, approved clients, connection attempts.

`SqlGrantStore` is what the data plane's `DownstreamGrants` reads through; the functions below
serve the connect flow and the person's own API. Every write that ends or replaces a grant
bumps the store epoch, so every replica stops using the old one on its next request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.oauth.downstream_grants import GrantKey, GrantUpdate, StoredGrant
from bastion.store.db import Database, bump_epoch
from bastion.store.models import DownstreamClientApproval, DownstreamConnect, DownstreamGrant, Origin
from bastion.store.tenancy import SYSTEM, Tenancy

__all__ = [
    "ConnectAttempt",
    "ConnectionView",
    "SqlGrantStore",
    "approve_client",
    "delete_connection",
    "list_connections",
    "save_grant",
    "start_connect",
    "take_connect",
]


def _grant_query(key: GrantKey) -> Select[DownstreamGrant]:
    return select(DownstreamGrant).where(
        DownstreamGrant.user_id == key.user_id,
        DownstreamGrant.origin_id == key.origin_id,
        DownstreamGrant.issuer == key.issuer,
        DownstreamGrant.resource == key.resource,
    )


class SqlGrantStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def _approved(self, session: AsyncSession, key: GrantKey) -> frozenset[str]:
        rows = await session.scalars(
            select(DownstreamClientApproval.client_key).where(
                DownstreamClientApproval.user_id == key.user_id, DownstreamClientApproval.origin_id == key.origin_id
            )
        )
        return frozenset(rows)

    @staticmethod
    def _stored(row: DownstreamGrant, approved: frozenset[str]) -> StoredGrant:
        return StoredGrant(id=row.id, sealed=row.sealed, status=row.status, version=row.version, approved=approved)

    async def load(self, key: GrantKey) -> StoredGrant | None:
        async with self._db.session(Tenancy.of(key.tenant_id)) as session:
            row = (await session.scalars(_grant_query(key))).first()
            return None if row is None else self._stored(row, await self._approved(session, key))

    async def update_locked(
        self, key: GrantKey, decide: Callable[[StoredGrant], Awaitable[GrantUpdate | None]]
    ) -> StoredGrant | None:
        # FOR UPDATE holds the row on PostgreSQL while the refresh is in flight, so another replica
        # waits and then finds the new tokens; SQLite serializes writers by itself.
        async with self._db.session(Tenancy.of(key.tenant_id)) as session:
            row = (await session.scalars(_grant_query(key).with_for_update())).first()
            if row is None:
                return None
            approved = await self._approved(session, key)
            update = await decide(self._stored(row, approved))
            if update is not None:
                if update.lost:
                    row.status = "lost"
                else:
                    assert update.sealed is not None
                    row.sealed, row.expires_at, row.scope = update.sealed, update.expires_at, update.scope
                row.version += 1
                row.updated_at = datetime.now(UTC)
            return self._stored(row, approved)


async def _save_grant(db: Database, key: GrantKey, *, sealed: str, expires_at: float | None, scope: str) -> None:
    """Store a person's new grant, replacing any earlier one for the same key (a lost one included)."""
    async with db.session(Tenancy.of(key.tenant_id)) as session:
        row = (await session.scalars(_grant_query(key))).first()
        if row is None:
            row = DownstreamGrant(
                user_id=key.user_id, origin_id=key.origin_id, issuer=key.issuer, resource=key.resource, version=0
            )
            session.add(row)
        row.sealed, row.expires_at, row.scope, row.status = sealed, expires_at, scope, "active"
        row.version = (row.version or 0) + 1
        row.updated_at = datetime.now(UTC)
        await bump_epoch(session)


async def save_grant(db: Database, key: GrantKey, *, sealed: str, expires_at: float | None, scope: str) -> None:
    """Store a person's new grant, replacing any earlier one for the same key (a lost one included)."""
    try:
        await _save_grant(db, key, sealed=sealed, expires_at=expires_at, scope=scope)
    except IntegrityError:  # two callbacks of one person finished at once: the row exists now
        await _save_grant(db, key, sealed=sealed, expires_at=expires_at, scope=scope)


async def _approve(session: AsyncSession, user_id: str, origin_id: str, client_key: str) -> None:
    exists = await session.scalar(
        select(DownstreamClientApproval.id).where(
            DownstreamClientApproval.user_id == user_id,
            DownstreamClientApproval.origin_id == origin_id,
            DownstreamClientApproval.client_key == client_key,
        )
    )
    if exists is None:
        session.add(DownstreamClientApproval(user_id=user_id, origin_id=origin_id, client_key=client_key))


async def approve_client(db: Database, tenant_id: str, user_id: str, origin_id: str, client_key: str) -> None:
    async with db.session(Tenancy.of(tenant_id)) as session:
        await _approve(session, user_id, origin_id, client_key)
        await bump_epoch(session)


async def is_approved(db: Database, tenant_id: str, user_id: str, origin_id: str, client_key: str) -> bool:
    async with db.session(Tenancy.of(tenant_id)) as session:
        found = await session.scalar(
            select(DownstreamClientApproval.id).where(
                DownstreamClientApproval.user_id == user_id,
                DownstreamClientApproval.origin_id == origin_id,
                DownstreamClientApproval.client_key == client_key,
            )
        )
        return found is not None


# --- connection attempts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectAttempt:
    tenant_id: str
    user_id: str
    origin_id: str
    browser_hash: str
    sealed_verifier: str


async def start_connect(db: Database, attempt: ConnectAttempt, state_hash: str, ttl_seconds: int) -> None:
    now = datetime.now(UTC)
    async with db.session(Tenancy.of(attempt.tenant_id)) as session:
        # Attempts nobody finished are dropped as new ones start.
        await session.execute(delete(DownstreamConnect).where(DownstreamConnect.expires_at < now))
        session.add(
            DownstreamConnect(
                state_hash=state_hash,
                user_id=attempt.user_id,
                origin_id=attempt.origin_id,
                browser_hash=attempt.browser_hash,
                sealed_verifier=attempt.sealed_verifier,
                expires_at=now + timedelta(seconds=ttl_seconds),
            )
        )


async def take_connect(db: Database, state_hash: str) -> ConnectAttempt | None:
    """The attempt a `state` names, removed in the same transaction: a state works once."""
    async with db.session(SYSTEM) as session:
        row = await session.get(DownstreamConnect, state_hash, with_for_update=True)
        if row is None:
            return None
        await session.delete(row)
        if row.expires_at < datetime.now(UTC):
            return None
        return ConnectAttempt(row.tenant_id, row.user_id, row.origin_id, row.browser_hash, row.sealed_verifier)


# --- the person's own view -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionView:
    origin_id: str
    origin_name: str
    issuer: str
    status: str
    scope: str
    expires_at: float | None
    approved_clients: list[str]
    updated_at: datetime


async def list_connections(db: Database, tenant_id: str, user_id: str) -> list[ConnectionView]:
    async with db.session(Tenancy.of(tenant_id)) as session:
        rows = await session.execute(
            select(DownstreamGrant, Origin.name)
            .join(Origin, Origin.id == DownstreamGrant.origin_id)
            .where(DownstreamGrant.user_id == user_id)
            .order_by(Origin.name)
        )
        approvals = await session.execute(
            select(DownstreamClientApproval.origin_id, DownstreamClientApproval.client_key).where(
                DownstreamClientApproval.user_id == user_id
            )
        )
        clients: dict[str, list[str]] = {}
        for origin_id, key in approvals:
            clients.setdefault(origin_id, []).append(key)
        return [
            ConnectionView(
                origin_id=grant.origin_id,
                origin_name=name,
                issuer=grant.issuer,
                status=grant.status,
                scope=grant.scope,
                expires_at=grant.expires_at,
                approved_clients=sorted(clients.get(grant.origin_id, [])),
                updated_at=grant.updated_at,
            )
            for grant, name in rows
        ]


async def delete_connection(db: Database, tenant_id: str, user_id: str, origin_id: str) -> list[tuple[GrantKey, str]]:
    """Withdraw a person's connection to an origin (grants and client approvals). Answers what was
    removed, (key, sealed tokens), so the caller can revoke the tokens at the origin's server."""
    async with db.session(Tenancy.of(tenant_id)) as session:
        grants = (
            await session.scalars(
                select(DownstreamGrant).where(
                    DownstreamGrant.user_id == user_id, DownstreamGrant.origin_id == origin_id
                )
            )
        ).all()
        removed = [
            (GrantKey(tenant_id, user_id, origin_id, grant.issuer, grant.resource), grant.sealed) for grant in grants
        ]
        for grant in grants:
            await session.delete(grant)
        await session.execute(
            delete(DownstreamClientApproval).where(
                DownstreamClientApproval.user_id == user_id, DownstreamClientApproval.origin_id == origin_id
            )
        )
        await bump_epoch(session)
        return removed
