"""Origins and the items discovered on them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.catalog.snapshot import definition_digest
from bastion.store.models import Origin, OriginItem
from bastion.store.repos._common import add_unique, by_id_or_name

__all__ = ["create", "get", "items_of", "list_all", "remove", "save_discovery"]


async def create(
    session: AsyncSession,
    *,
    name: str,
    transport: str,
    url: str | None,
    command: list[str] | None,
    timeout_seconds: float | None,
) -> Origin:
    origin = Origin(name=name, transport=transport, url=url, command=command, timeout_seconds=timeout_seconds)
    return await add_unique(session, origin, f"an origin named {name!r} already exists")


async def get(session: AsyncSession, origin_id_or_name: str) -> Origin:
    return await by_id_or_name(session, Origin, Origin.name, origin_id_or_name, "origin")


async def list_all(session: AsyncSession) -> Sequence[Origin]:
    return (await session.scalars(select(Origin).order_by(Origin.name))).all()


async def items_of(session: AsyncSession, origin_id: str) -> Sequence[OriginItem]:
    query = select(OriginItem).where(OriginItem.origin_id == origin_id).order_by(OriginItem.kind, OriginItem.name)
    return (await session.scalars(query)).all()


async def remove(session: AsyncSession, origin: Origin) -> None:
    await session.delete(origin)


async def save_discovery(
    session: AsyncSession,
    origin: Origin,
    *,
    items: list[tuple[str, str, dict[str, Any]]] | None,
    protocol_version: str | None,
    error: str | None,
) -> None:
    """Replace the origin's item list with a fresh discovery (or record why it failed)."""
    origin.discovered_at = datetime.now(UTC)
    origin.last_error = error
    if items is None:  # failed discovery keeps the last known items
        return
    origin.protocol_version = protocol_version
    await session.execute(delete(OriginItem).where(OriginItem.origin_id == origin.id))
    for kind, name, definition in items:
        session.add(
            OriginItem(
                origin_id=origin.id,
                kind=kind,
                name=name,
                definition=definition,
                digest=definition_digest(definition),
            )
        )
