"""Virtual servers and the items selected into them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.catalog.snapshot import MAX_ITEM_NAME
from bastion.errors import BadRequest, Conflict, NotFound
from bastion.store.models import OriginItem, ServerItem, VirtualServer
from bastion.store.repos._common import add_unique, by_id_or_name, flush_unique

__all__ = ["compose", "create", "flush_item", "get", "get_item", "items_of", "list_all", "remove"]


async def create(session: AsyncSession, *, slug: str, title: str, description: str) -> VirtualServer:
    server = VirtualServer(slug=slug, title=title, description=description)
    return await add_unique(session, server, f"a virtual server with slug {slug!r} already exists")


async def get(session: AsyncSession, id_or_slug: str) -> VirtualServer:
    return await by_id_or_name(session, VirtualServer, VirtualServer.slug, id_or_slug, "virtual server")


async def list_all(session: AsyncSession) -> Sequence[VirtualServer]:
    return (await session.scalars(select(VirtualServer).order_by(VirtualServer.slug))).all()


async def items_of(session: AsyncSession, server_id: str) -> Sequence[ServerItem]:
    query = select(ServerItem).where(ServerItem.server_id == server_id)
    return (await session.scalars(query.order_by(ServerItem.kind, ServerItem.exposed_name))).all()


async def get_item(session: AsyncSession, server_id: str, item_id: str) -> ServerItem:
    item = await session.scalar(select(ServerItem).where(ServerItem.server_id == server_id, ServerItem.id == item_id))
    if item is None:
        raise NotFound(f"no item {item_id!r} in this virtual server")
    return item


async def compose(
    session: AsyncSession,
    server: VirtualServer,
    *,
    origin_id: str,
    prefix: str,
    names: list[str] | None,
    aliases: dict[str, str],
) -> list[ServerItem]:
    """Select an origin's discovered items into the server.

    `names` limits the selection (None: every discovered item); tools and prompts
    are exposed as `aliases[name]` or `prefix + name`; resources keep their URI.
    """
    offered = (await session.scalars(select(OriginItem).where(OriginItem.origin_id == origin_id))).all()
    if not offered:
        raise Conflict("the origin has no discovered items yet: refresh its discovery first")
    chosen = [i for i in offered if names is None or i.name in names]
    missing = set(names or ()) - {i.name for i in chosen}
    if missing:
        raise NotFound(f"the origin does not offer {', '.join(sorted(missing))}")
    renamable = {i.name for i in chosen if i.kind in ("tool", "prompt")}
    stray = set(aliases) - renamable
    if stray:
        raise BadRequest(
            f"aliases name no selected tool or prompt: {', '.join(sorted(stray))} (resources keep their URI)"
        )
    existing = {(i.origin_id, i.kind, i.name) for i in await items_of(session, server.id)}
    added: list[ServerItem] = []
    for item in chosen:
        if (item.origin_id, item.kind, item.name) in existing:
            continue
        renamed = item.kind in ("tool", "prompt")
        exposed = aliases.get(item.name, prefix + item.name) if renamed else item.name
        if len(exposed) > MAX_ITEM_NAME:
            raise BadRequest(f"{exposed[:40]!r}... would be longer than {MAX_ITEM_NAME} characters: use an alias")
        added.append(
            ServerItem(server_id=server.id, origin_id=origin_id, kind=item.kind, name=item.name, exposed_name=exposed)
        )
    session.add_all(added)
    await flush_unique(session, "two selected items would share a name in this server: give a prefix or an alias")
    return added


async def remove(session: AsyncSession, server: VirtualServer) -> None:
    await session.delete(server)


async def flush_item(session: AsyncSession, item: ServerItem) -> None:
    """Write an item change now, so a name clash surfaces as a Conflict."""
    # The message is built before flushing: a failed flush expires the object.
    await flush_unique(session, f"another item in this server is already named {item.exposed_name!r}")
