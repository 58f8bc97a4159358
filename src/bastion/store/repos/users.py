"""Federated users: people who sign in through an external OpenID provider, keyed by (provider, subject).

OIDC Core §5.7: only the issuer and `sub` identify a person; a preferred user name
may change or be reused, so it only chooses the Bastion user name, and a clash
with another user's name falls back to one derived from the subject. Federated
users hold an unusable password hash: `bastion.logins` refuses them a password
login outright, and no one knows a password that would match.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.errors import Unavailable
from bastion.identity.passwords import hash_password
from bastion.store.db import bump_epoch
from bastion.store.models import LoginEvent, Tenant, User
from bastion.store.repos._common import flush_unique

__all__ = ["FederatedLogin", "find_federated", "record_login", "save_federated"]


@dataclass(frozen=True, slots=True)
class FederatedLogin:
    """What an identity provider asserted about a person, already mapped to Bastion's terms."""

    provider: str
    subject: str
    username: str
    roles: tuple[str, ...]
    tenant: str = "default"  # slug of the tenant a first sign-in creates the user in


async def find_federated(session: AsyncSession, provider: str, subject: str) -> User | None:
    return await session.scalar(select(User).where(User.provider == provider, User.subject == subject))


def _fallback_name(login: FederatedLogin) -> str:
    digest = hashlib.sha256(login.subject.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{login.provider}:{digest}"


async def _free_name(session: AsyncSession, login: FederatedLogin, user: User | None) -> str:
    holder = await session.scalar(select(User).where(User.username == login.username))
    if holder is None or holder is user:
        return login.username
    return user.username if user is not None else _fallback_name(login)


async def _unusable_password_hash() -> str:
    # A hash of a secret that is thrown away at once. Argon2 costs ~100 ms of CPU: off the event loop.
    return await anyio.to_thread.run_sync(hash_password, secrets.token_urlsafe(32))


async def save_federated(session: AsyncSession, login: FederatedLogin) -> tuple[User, bool]:
    """Create the federated user on first sign-in; afterwards bring its name and roles up to date.
    Returns the user and whether anything changed (the caller then announces the change).

    Roles follow the provider's groups at every sign-in, so removing someone from a
    group at the provider takes the role away at their next Bastion sign-in. A change
    bumps the store's epoch: snapshots carry user names (API token principals).
    """
    user = await find_federated(session, login.provider, login.subject)
    username = await _free_name(session, login, user)
    if user is None:
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.slug == login.tenant))
        if tenant_id is None:  # a configuration error: refuse rather than place the person elsewhere
            raise Unavailable(
                f"sign-in provider {login.provider!r} names tenant {login.tenant!r}, which does not exist"
            )
        user = User(
            tenant_id=tenant_id,
            username=username,
            password_hash=await _unusable_password_hash(),
            is_admin=False,
            provider=login.provider,
            subject=login.subject,
            roles=list(login.roles),
        )
        session.add(user)
    elif user.username == username and list(user.roles) == list(login.roles):
        return user, False
    else:
        user.username, user.roles = username, list(login.roles)
    await flush_unique(session, f"the user name {username!r} is taken; sign in again")
    await bump_epoch(session)
    return user, True


async def record_login(
    session: AsyncSession, *, username: str, user_id: str | None, outcome: str, ip: str, user_agent: str
) -> None:
    """One row in the login history, in the user's tenant (an unknown name belongs to none)."""
    user = None if user_id is None else await session.get(User, user_id)
    session.add(
        LoginEvent(
            tenant_id=None if user is None else user.tenant_id,
            username=username[:255],
            user_id=user_id,
            outcome=outcome,
            ip=ip[:64],
            user_agent=user_agent[:512],
        )
    )
