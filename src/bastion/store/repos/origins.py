"""Origins and the items discovered on them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.catalog.snapshot import definition_digest
from bastion.errors import Conflict, NotFound
from bastion.store.models import Origin, OriginItem
from bastion.store.repos._common import add_unique, by_id_or_name

__all__ = ["create", "get", "items_of", "list_all", "lock", "pin_all", "pin_one", "remove", "save_discovery"]


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


async def lock(session: AsyncSession, origin: Origin) -> None:
    """Take the origin's row until the transaction ends, and read it again: its review, its
    rediscovery and a change of its credential are serialized on it, so none decides on what another
    is changing. A write that changes nothing: PostgreSQL locks the row, and SQLite (which ignores
    FOR UPDATE and starts a transaction only at the first write) takes its one writer's lock here,
    before the reads that follow."""
    await session.execute(
        update(Origin)
        .where(Origin.id == origin.id)
        .values(name=Origin.name)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(origin)


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
    flags: Mapping[tuple[str, str], list[dict[str, str]]] | None = None,
    hold_flagged: bool = True,
) -> None:
    """Replace the origin's item list with a fresh discovery (or record why it failed).

    Pins survive rediscovery: an item whose definition changed keeps the digest that was approved,
    so it stands quarantined until reviewed. New items are pinned only by the first successful
    discovery of an origin already approved (registered by the operator, or approved before it
    could be reached: its credential came later), and not those the poisoning scan flagged high
    when `hold_flagged`. Any later new item waits for an administrator: otherwise an origin could
    withdraw an approved item (or all of them) and offer it again, changed, as "new".
    """
    await lock(session, origin)
    origin.discovered_at = datetime.now(UTC)
    origin.last_error = error
    if items is None:  # failed discovery keeps the last known items
        return
    first_success = origin.protocol_version is None  # set by every successful discovery, never cleared
    origin.protocol_version = protocol_version
    before = {(i.kind, i.name): i for i in await items_of(session, origin.id)}
    await session.execute(delete(OriginItem).where(OriginItem.origin_id == origin.id))
    for kind, name, definition in items:
        found = (flags or {}).get((kind, name), [])
        digest = definition_digest(definition)
        previous = before.get((kind, name))
        if previous is not None:
            pinned, pinned_definition = previous.pinned_digest, previous.pinned_definition
        elif first_success and origin.status == "approved" and not (hold_flagged and _high(found)):
            pinned, pinned_definition = digest, definition
        else:
            pinned, pinned_definition = None, None
        session.add(
            OriginItem(
                origin_id=origin.id,
                kind=kind,
                name=name,
                definition=definition,
                digest=digest,
                pinned_digest=pinned,
                pinned_definition=pinned_definition,
                flags=found,
            )
        )


async def pin_all(session: AsyncSession, items: Sequence[OriginItem], *, hold_flagged: bool) -> None:
    """An approval: every item's definition, as the reviewer's approval read them (under the origin's
    `lock`), is what was approved (flagged ones excepted)."""
    for item in items:
        if not (hold_flagged and _high(item.flags)):
            item.pinned_digest, item.pinned_definition = item.digest, item.definition


async def pin_one(session: AsyncSession, origin: Origin, kind: str, name: str, digest: str) -> OriginItem:
    """An administrator approved this item's definition, having seen its change and flags: pinned
    only if it is still the one they saw (`digest`), not one the origin offered since."""
    for item in await items_of(session, origin.id):
        if item.kind == kind and item.name == name:
            if item.digest != digest:
                raise Conflict(
                    f"the {kind} {name!r} changed again since you reviewed it (now {item.digest[:12]}…): "
                    "review the current definition and approve that"
                )
            item.pinned_digest, item.pinned_definition = item.digest, item.definition
            return item
    raise NotFound(f"origin {origin.name!r} offers no {kind} named {name!r}")


def _high(flags: Sequence[Mapping[str, Any]] | None) -> bool:
    return any(flag.get("severity") == "high" for flag in flags or ())
