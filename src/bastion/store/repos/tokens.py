"""API tokens and users."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.errors import NotFound
from bastion.identity.tokens import hash_token, new_token
from bastion.store.models import ApiToken, Meta, User
from bastion.store.repos._common import add_unique

__all__ = ["create_token", "create_user", "get", "get_meta", "list_tokens", "revoke", "set_meta", "user_by_name"]


async def create_user(session: AsyncSession, *, username: str, password_hash: str, is_admin: bool) -> User:
    user = User(username=username, password_hash=password_hash, is_admin=is_admin)
    return await add_unique(session, user, f"a user named {username!r} already exists")


async def user_by_name(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username))


async def create_token(
    session: AsyncSession,
    *,
    user: User,
    name: str,
    scopes: list[str],
    server_ids: list[str],
    expires_at: datetime,
) -> tuple[ApiToken, str]:
    """Returns the row and the secret; the secret exists nowhere else after this."""
    secret = new_token()
    token = ApiToken(
        name=name,
        token_hash=hash_token(secret),
        user_id=user.id,
        scopes=scopes,
        server_ids=server_ids,
        expires_at=expires_at,
    )
    session.add(token)
    await session.flush()
    return token, secret


async def list_tokens(session: AsyncSession) -> Sequence[ApiToken]:
    return (await session.scalars(select(ApiToken).order_by(ApiToken.created_at))).all()


async def get(session: AsyncSession, token_id: str) -> ApiToken:
    token = await session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"no API token {token_id!r}")
    return token


async def revoke(session: AsyncSession, token_id: str) -> ApiToken:
    token = await get(session, token_id)
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
    return token


async def get_meta(session: AsyncSession, key: str) -> str | None:
    row = await session.get(Meta, key)
    return row.value if row else None


async def set_meta(session: AsyncSession, key: str, value: str) -> None:
    await session.merge(Meta(key=key, value=value))
