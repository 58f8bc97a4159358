"""Shapes every repository shares: insert-or-Conflict, and lookup by id or by name."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from bastion.errors import Conflict, NotFound
from bastion.store.models import Base

__all__ = ["add_unique", "by_id_or_name", "flush_unique"]

Row = TypeVar("Row", bound=Base)


async def flush_unique(session: AsyncSession, conflict: str) -> None:
    """Write pending changes now, so a unique-constraint clash becomes a Conflict with `conflict`."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(conflict) from exc


async def add_unique(session: AsyncSession, row: Row, conflict: str) -> Row:
    session.add(row)
    await flush_unique(session, conflict)
    return row


async def by_id_or_name(
    session: AsyncSession, model: type[Row], name_column: InstrumentedAttribute[Any], ref: str, what: str
) -> Row:
    # The id wins over a name that happens to look like one.
    row = await session.get(model, ref)
    if row is None:
        row = await session.scalar(select(model).where(name_column == ref))
    if row is None:
        raise NotFound(f"no {what} {ref!r}")
    return row
