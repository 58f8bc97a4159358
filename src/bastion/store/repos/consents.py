"""A user's recorded consents: list them, withdraw one (which also ends what it allowed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from bastion.bus import Bus, ChangeEvent
from bastion.errors import NotFound
from bastion.store.db import Database, bump_epoch
from bastion.store.models import OAuthClient, OAuthConsent, OAuthToken, VirtualServer
from bastion.store.repos.oauth import revoke_families
from bastion.store.tenancy import SYSTEM

__all__ = ["ConsentView", "list_consents", "withdraw_consent"]


@dataclass(frozen=True, slots=True)
class ConsentView:
    id: str
    client_id: str
    client_name: str
    server_slug: str
    scopes: list[str]
    created_at: datetime


async def list_consents(db: Database, user_id: str) -> list[ConsentView]:
    async with db.session(SYSTEM) as session:
        rows = await session.execute(
            select(OAuthConsent, VirtualServer.slug, OAuthClient.client_name)
            .join(VirtualServer, VirtualServer.id == OAuthConsent.server_id)
            .outerjoin(OAuthClient, OAuthClient.client_id == OAuthConsent.client_id)
            .where(OAuthConsent.user_id == user_id)
            .order_by(OAuthConsent.created_at)
        )
        return [
            ConsentView(
                id=consent.id,
                client_id=consent.client_id,
                client_name=name or consent.client_id,  # metadata-document clients are not stored
                server_slug=slug,
                scopes=list(consent.scopes),
                created_at=consent.created_at,
            )
            for consent, slug, name in rows
        ]


async def withdraw_consent(db: Database, bus: Bus, user_id: str, consent_id: str) -> None:
    """Forget the consent and revoke every token the client holds for this user and server."""
    async with db.session(SYSTEM) as session:
        consent = await session.get(OAuthConsent, consent_id)
        if consent is None or consent.user_id != user_id:
            raise NotFound(f"no consent {consent_id!r}")  # another user's consent is not theirs to see
        granted = select(OAuthToken.family_id).where(
            OAuthToken.user_id == user_id,
            OAuthToken.client_id == consent.client_id,
            OAuthToken.server_id == consent.server_id,
        )
        await revoke_families(session, granted)
        await session.execute(delete(OAuthConsent).where(OAuthConsent.id == consent_id))
        await bump_epoch(session)
    await bus.publish(ChangeEvent("tokens", consent_id))
