"""`OAuthStore` on SQLAlchemy, and the data plane's first-sight lookup of an access token."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import Select, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.bus import Bus, ChangeEvent
from bastion.errors import InvalidGrant
from bastion.governance.permissions import Grants, parse_permissions
from bastion.identity.principal import Principal
from bastion.oauth.provider import Client, CodeRecord, Grant, TokenRecord, UserRecord
from bastion.store.db import Database, bump_epoch
from bastion.store.models import (
    OAuthClient,
    OAuthCode,
    OAuthConsent,
    OAuthFamily,
    OAuthToken,
    User,
)
from bastion.store.repos.spent import spend
from bastion.store.tenancy import SYSTEM

__all__ = ["SqlOAuthStore", "hold_live_family", "revoke_families", "stored_client"]


_BATCH = 900  # ids per statement: with the other parameters, under SQLite's oldest limit (999)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _grant(row: OAuthCode | OAuthToken) -> Grant:
    return Grant(
        family_id=row.family_id,
        client_id=row.client_id,
        user_id=row.user_id,
        server_id=row.server_id,
        scopes=tuple(row.scopes),
    )


def stored_client(row: OAuthClient) -> Client:
    return Client(
        client_id=row.client_id,
        kind=cast(Any, row.kind),
        client_name=row.client_name,
        redirect_uris=tuple(row.redirect_uris),
        grant_types=tuple(row.grant_types),
        token_endpoint_auth_method=row.token_endpoint_auth_method,
        application_type=row.application_type,
        scope=row.scope,
        secret_hash=row.secret_hash,
        owner_user_id=row.owner_user_id,
        server_ids=tuple(row.server_ids),
        permissions=None if row.permissions is None else tuple(row.permissions),
    )


async def revoke_families(session: AsyncSession, families: Select[str] | list[str]) -> None:
    """Revoke the families named (ids, or a query of ids) and every token of theirs, in `session`,
    then the families exchanged for those tokens (RFC 8693), and theirs in turn.

    The family rows first (see `OAuthFamily`): a rotation of one of them that is saving tokens
    holds its row until it commits, so the tokens' statement, which starts after, sees what it
    saved; a rotation that comes later finds its family revoked. An exchange holds its source's
    family row the same way, so the query for exchanged families, which starts after, sees the
    family it saved. The caller bumps the epoch."""
    now = datetime.now(UTC)
    named: Select[str] | list[str] = families
    while True:
        await session.execute(
            update(OAuthFamily)
            .where(OAuthFamily.family_id.in_(named), OAuthFamily.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await session.execute(
            update(OAuthToken)
            .where(OAuthToken.family_id.in_(named), OAuthToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        named = list(
            await session.scalars(_exchanged_from(select(OAuthToken.token_hash).where(OAuthToken.family_id.in_(named))))
        )
        if not named:
            return


def _exchanged_from(tokens: Select[str] | list[str]) -> Select[str]:
    """The live families issued by token exchange for any of `tokens` (hashes, or a query of them)."""
    return select(OAuthFamily.family_id).where(OAuthFamily.source_token.in_(tokens), OAuthFamily.revoked_at.is_(None))


async def hold_live_family(session: AsyncSession, family_id: str, *, source: str | None = None) -> None:
    """Lock the family's row for the rest of `session`'s transaction if it is live (a new family
    gets its row, naming the `source` token it is exchanged for); InvalidGrant if it was revoked,
    or its source token was, which rolls back what the transaction saved."""
    held = await session.execute(
        update(OAuthFamily)
        .where(OAuthFamily.family_id == family_id, OAuthFamily.revoked_at.is_(None))
        .values(revoked_at=None)  # changes nothing; takes the row for the transaction
    )
    if cast(Any, held).rowcount == 1:
        return
    if await session.get(OAuthFamily, family_id) is not None:
        raise InvalidGrant("this grant was revoked (a code or refresh token of it was used twice, or revoked)")
    if source is not None:
        await _hold_live_source(session, source)
    session.add(OAuthFamily(family_id=family_id, source_token=source))


async def _hold_live_source(session: AsyncSession, token_hash: str) -> None:
    # The source's family row first (what its revocation locks too), then the token itself: a
    # revocation that came first is seen here, one that comes later sees the new family.
    token = await session.scalar(select(OAuthToken).where(OAuthToken.token_hash == token_hash))
    if token is not None:
        await hold_live_family(session, token.family_id)
        await session.refresh(token)
    if token is None or token.revoked_at is not None:
        raise InvalidGrant("the subject token was revoked meanwhile")


async def _touch_family(session: AsyncSession, family_id: str) -> None:
    """Take the family's row for the transaction, changing nothing, whether it is live or not."""
    await session.execute(
        update(OAuthFamily).where(OAuthFamily.family_id == family_id).values(revoked_at=OAuthFamily.revoked_at)
    )


def _user(user: User) -> UserRecord:
    return UserRecord(
        id=user.id, username=user.username, is_admin=user.is_admin, roles=tuple(user.roles), tenant_id=user.tenant_id
    )


def _token(row: OAuthToken) -> TokenRecord:
    return TokenRecord(
        token_hash=row.token_hash,
        kind=cast(Any, row.kind),
        grant=_grant(row),
        expires_at=row.expires_at.timestamp(),
        issued_at=row.created_at.timestamp(),
        used=row.used_at is not None,
        revoked=row.revoked_at is not None,
    )


class SqlOAuthStore:
    def __init__(self, db: Database, bus: Bus) -> None:
        self._db = db
        self._bus = bus

    async def get_client(self, client_id: str) -> Client | None:
        async with self._db.session(SYSTEM) as session:
            row = await session.get(OAuthClient, client_id)
        return None if row is None else stored_client(row)

    async def list_clients(self, *, client_id: str | None = None) -> list[tuple[Client, datetime]]:
        """Stored clients (all, or the one named) with their creation times, oldest first."""
        query = select(OAuthClient).order_by(OAuthClient.created_at)
        if client_id is not None:
            query = query.where(OAuthClient.client_id == client_id)
        async with self._db.session(SYSTEM) as session:
            rows = (await session.scalars(query)).all()
        return [(stored_client(row), row.created_at) for row in rows]

    async def delete_client(self, client_id: str) -> bool:
        """Remove a client and revoke every token issued to it, at once on every replica.

        False when there was no such client.
        """
        async with self._db.session(SYSTEM) as session:
            row = await session.get(OAuthClient, client_id)
            if row is None:
                return False
            await revoke_families(session, select(OAuthToken.family_id).where(OAuthToken.client_id == client_id))
            await session.execute(delete(OAuthConsent).where(OAuthConsent.client_id == client_id))
            await session.delete(row)
            await bump_epoch(session)
        await self._bus.publish(ChangeEvent("tokens", client_id))
        return True

    async def add_client(self, client: Client, registration: dict[str, Any], *, tenant_id: str | None = None) -> None:
        """Store a client; a service client belongs to its creator's tenant, a registered one to none."""
        async with self._db.session(SYSTEM) as session:
            session.add(
                OAuthClient(
                    tenant_id=tenant_id,
                    client_id=client.client_id,
                    secret_hash=client.secret_hash,
                    kind=client.kind,
                    client_name=client.client_name,
                    redirect_uris=list(client.redirect_uris),
                    grant_types=list(client.grant_types),
                    token_endpoint_auth_method=client.token_endpoint_auth_method,
                    application_type=client.application_type,
                    scope=client.scope,
                    metadata_json=registration,
                    owner_user_id=client.owner_user_id,
                    server_ids=list(client.server_ids),
                    permissions=None if client.permissions is None else list(client.permissions),
                )
            )

    async def save_code(self, code: CodeRecord) -> None:
        async with self._db.session(SYSTEM) as session:
            session.add(OAuthFamily(family_id=code.grant.family_id))  # before its tokens: a replay can revoke it
            session.add(
                OAuthCode(
                    code_hash=code.code_hash,
                    family_id=code.grant.family_id,
                    client_id=code.grant.client_id,
                    user_id=code.grant.user_id,
                    server_id=code.grant.server_id,
                    redirect_uri=code.redirect_uri,
                    scopes=list(code.grant.scopes),
                    code_challenge=code.code_challenge,
                    nonce=code.nonce,
                    expires_at=_at(code.expires_at),
                )
            )

    async def take_code(self, code_hash: str, now: float, client_id: str) -> CodeRecord | None:
        async with self._db.session(SYSTEM) as session:
            # One conditional UPDATE: of two concurrent redemptions exactly one sees rowcount 1.
            # Only by the client it was issued to: another one's attempt changes nothing.
            result = await session.execute(
                update(OAuthCode)
                .where(OAuthCode.code_hash == code_hash, OAuthCode.client_id == client_id, OAuthCode.used_at.is_(None))
                .values(used_at=_at(now))
            )
            first = cast(Any, result).rowcount == 1
            row = await session.get(OAuthCode, code_hash)
            if row is None or row.client_id != client_id:
                return None
            return CodeRecord(
                code_hash=row.code_hash,
                grant=_grant(row),
                redirect_uri=row.redirect_uri,
                code_challenge=row.code_challenge,
                expires_at=row.expires_at.timestamp(),
                nonce=row.nonce,
                used=not first,
            )

    async def save_tokens(
        self,
        grant: Grant,
        tokens: list[tuple[str, str, float]],
        issued_at: float,
        *,
        access_scopes: tuple[str, ...] | None = None,
    ) -> None:
        async with self._db.session(SYSTEM) as session:
            await hold_live_family(session, grant.family_id, source=grant.source)
            for token_hash, kind, expires_at in tokens:
                scopes = access_scopes if kind == "access" and access_scopes is not None else grant.scopes
                session.add(
                    OAuthToken(
                        token_hash=token_hash,
                        kind=kind,
                        family_id=grant.family_id,
                        client_id=grant.client_id,
                        user_id=grant.user_id,
                        server_id=grant.server_id,
                        scopes=list(scopes),
                        expires_at=_at(expires_at),
                        created_at=_at(issued_at),
                    )
                )

    async def take_refresh(self, token_hash: str, now: float, client_id: str) -> TokenRecord | None:
        async with self._db.session(SYSTEM) as session:
            mine = (
                OAuthToken.token_hash == token_hash,
                OAuthToken.kind == "refresh",
                OAuthToken.client_id == client_id,
            )
            result = await session.execute(
                update(OAuthToken).where(*mine, OAuthToken.used_at.is_(None)).values(used_at=_at(now))
            )
            first = cast(Any, result).rowcount == 1
            row = await session.scalar(select(OAuthToken).where(*mine))
            if row is None:
                return None
            return dataclasses.replace(_token(row), used=not first)

    async def give_back(self, kind: Literal["code", "refresh"], token_hash: str, taken_at: float) -> None:
        async with self._db.session(SYSTEM) as session:
            if kind == "code":
                code = (OAuthCode.code_hash == token_hash, OAuthCode.used_at == _at(taken_at))
                await session.execute(update(OAuthCode).where(*code).values(used_at=None))
            else:
                token = (OAuthToken.token_hash == token_hash, OAuthToken.kind == "refresh")
                await session.execute(
                    update(OAuthToken).where(*token, OAuthToken.used_at == _at(taken_at)).values(used_at=None)
                )

    async def find_token(self, token_hash: str) -> TokenRecord | None:
        async with self._db.session(SYSTEM) as session:
            row = await session.scalar(select(OAuthToken).where(OAuthToken.token_hash == token_hash))
            return None if row is None else _token(row)

    async def revoke_family(self, family_id: str) -> None:
        async with self._db.session(SYSTEM) as session:
            if await session.get(OAuthFamily, family_id) is None:
                session.add(OAuthFamily(family_id=family_id))  # one that never saved a token: revoked below
                await session.flush()
            await revoke_families(session, [family_id])
            await bump_epoch(session)
        # This replica drops its cached tokens now; the others on their next epoch check.
        await self._bus.publish(ChangeEvent("tokens", family_id))

    async def revoke_token(self, token_hash: str) -> TokenRecord | None:
        """Revoke one token (RFC 7009); a refresh token takes its family's access tokens with it."""
        record = await self.find_token(token_hash)
        if record is None:
            return None
        if record.kind == "refresh":
            await self.revoke_family(record.grant.family_id)
        else:
            async with self._db.session(SYSTEM) as session:
                await _touch_family(session, record.grant.family_id)  # ordered against an exchange of it
                await session.execute(
                    update(OAuthToken).where(OAuthToken.token_hash == token_hash).values(revoked_at=datetime.now(UTC))
                )
                # Materialized: the query names live families only, and the first update revokes them.
                await revoke_families(session, list(await session.scalars(_exchanged_from([token_hash]))))
                await bump_epoch(session)
            await self._bus.publish(ChangeEvent("tokens", record.grant.family_id))
        return record

    async def get_user(self, user_id: str) -> UserRecord | None:
        async with self._db.session(SYSTEM) as session:
            user = await session.get(User, user_id)
        return None if user is None else _user(user)

    async def find_user_by_name(self, username: str) -> UserRecord | None:
        async with self._db.session(SYSTEM) as session:
            user = await session.scalar(select(User).where(User.username == username))
        return None if user is None else _user(user)

    async def consented_scopes(self, user_id: str, client_id: str, server_id: str) -> frozenset[str] | None:
        async with self._db.session(SYSTEM) as session:
            row = await session.scalar(
                select(OAuthConsent).where(
                    OAuthConsent.user_id == user_id,
                    OAuthConsent.client_id == client_id,
                    OAuthConsent.server_id == server_id,
                )
            )
            return None if row is None else frozenset(row.scopes)

    async def save_consent(self, user_id: str, client_id: str, server_id: str, scopes: frozenset[str]) -> None:
        async with self._db.session(SYSTEM) as session:
            row = await session.scalar(
                select(OAuthConsent).where(
                    OAuthConsent.user_id == user_id,
                    OAuthConsent.client_id == client_id,
                    OAuthConsent.server_id == server_id,
                )
            )
            if row is None:
                session.add(
                    OAuthConsent(user_id=user_id, client_id=client_id, server_id=server_id, scopes=sorted(scopes))
                )
            else:
                row.scopes = sorted(scopes | frozenset(row.scopes))

    async def use_once(self, key: str, expires_at: float, now: float) -> bool:
        return await spend(self._db, key, expires_at, now)

    async def live_access_tokens(self, token_ids: Collection[str]) -> set[str]:
        """Which of these access tokens (by id) are not revoked: what an open stream re-checks.
        Asked in batches: one statement's parameters are bounded (SQLite, asyncpg)."""
        wanted, live = list(token_ids), set[str]()
        async with self._db.session(SYSTEM) as session:
            for start in range(0, len(wanted), _BATCH):
                live.update(
                    await session.scalars(
                        select(OAuthToken.id).where(
                            OAuthToken.id.in_(wanted[start : start + _BATCH]),
                            OAuthToken.kind == "access",
                            OAuthToken.revoked_at.is_(None),
                        )
                    )
                )
        return live

    async def access_principal(self, token_hash: str) -> Principal | None:
        """The data plane's `TokenLookup`: a live access token's principal, or None."""
        async with self._db.session(SYSTEM) as session:
            row = (
                await session.execute(
                    select(OAuthToken, User, OAuthClient.owner_user_id, OAuthClient.permissions)
                    .join(User, User.id == OAuthToken.user_id)
                    .outerjoin(OAuthClient, OAuthClient.client_id == OAuthToken.client_id)
                    .where(
                        OAuthToken.token_hash == token_hash,
                        OAuthToken.kind == "access",
                        OAuthToken.revoked_at.is_(None),
                    )
                )
            ).first()
        if row is None:
            return None
        token, user, owner_id, permissions = row
        # A service client someone else set up for its owner acts as the owner within that limit.
        limited = permissions is not None and owner_id == user.id
        return Principal(
            token_id=token.id,
            user_id=user.id,
            username=user.username,
            is_admin=user.is_admin,
            scopes=frozenset(token.scopes),
            server_ids=frozenset({token.server_id}),
            expires_at=token.expires_at.timestamp(),
            client_id=token.client_id,
            grant_id=token.family_id,
            roles=frozenset(user.roles),
            limit=Grants(parse_permissions(permissions)) if limited else None,
        )
