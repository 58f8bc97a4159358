"""A user's recorded consents: list them, withdraw one (which also ends what it allowed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, update

from bastion.bus import Bus, ChangeEvent
from bastion.errors import NotFound
from bastion.store.db import Database, bump_epoch
from bastion.store.models import OAuthClient, OAuthCode, OAuthConsent, OAuthToken, VirtualServer
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
    """Forget the consent and revoke every token the client holds for this user and server, and
    every grant it was given that has no token yet: a code not redeemed is spent, and a code being
    redeemed right now saves its tokens into a family already revoked (a code's family row is
    stored with it, so the save is ordered against this revocation, `hold_live_family`)."""
    async with db.session(SYSTEM) as session:
        consent = await session.get(OAuthConsent, consent_id)
        if consent is None or consent.user_id != user_id:
            raise NotFound(f"no consent {consent_id!r}")  # another user's consent is not theirs to see
        now = datetime.now(UTC)
        coded = (
            OAuthCode.user_id == user_id,
            OAuthCode.client_id == consent.client_id,
            OAuthCode.server_id == consent.server_id,
            OAuthCode.expires_at > now,
        )
        # The code's own single-use claim: a redemption after this one finds it used and is refused.
        await session.execute(update(OAuthCode).where(*coded, OAuthCode.used_at.is_(None)).values(used_at=now))
        code_families = set(await session.scalars(select(OAuthCode.family_id).where(*coded)))
        granted = select(OAuthToken.family_id).where(
            OAuthToken.user_id == user_id,
            OAuthToken.client_id == consent.client_id,
            OAuthToken.server_id == consent.server_id,
        )
        await revoke_families(session, granted)
        await revoke_families(session, sorted(code_families))
        await session.execute(delete(OAuthConsent).where(OAuthConsent.id == consent_id))
        await bump_epoch(session)
    await bus.publish(ChangeEvent("tokens", consent_id))
