"""Builds the data plane's Snapshot from the store (a handful of queries, off the hot path)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.catalog.snapshot import ItemKind, OriginSpec, Route, ServerView, Snapshot
from bastion.identity.principal import Principal
from bastion.store.models import ApiToken, Origin, OriginItem, ServerItem, StateEpoch, User, VirtualServer

__all__ = ["load_snapshot", "origin_spec"]


async def load_snapshot(session: AsyncSession) -> Snapshot:
    epoch = int(await session.scalar(select(StateEpoch.value).where(StateEpoch.id == 1)) or 0)
    origins = {o.id: origin_spec(o) for o in await session.scalars(select(Origin))}
    definitions = {(i.origin_id, i.kind, i.name): i.definition for i in await session.scalars(select(OriginItem))}
    by_server: dict[str, list[ServerItem]] = defaultdict(list)
    for item in await session.scalars(select(ServerItem).where(ServerItem.enabled.is_(True))):
        by_server[item.server_id].append(item)
    servers = {
        s.slug: _server_view(s, by_server[s.id], definitions) for s in await session.scalars(select(VirtualServer))
    }
    return Snapshot(epoch=epoch, servers=servers, origins=origins, tokens=await _tokens(session))


def origin_spec(origin: Origin) -> OriginSpec:
    return OriginSpec(
        id=origin.id,
        name=origin.name,
        transport=cast(Any, origin.transport),
        url=origin.url,
        command=tuple(origin.command) if origin.command else None,
        timeout_seconds=origin.timeout_seconds,
    )


def _server_view(
    server: VirtualServer, items: list[ServerItem], definitions: dict[tuple[str, str, str], dict[str, Any]]
) -> ServerView:
    maps: dict[str, dict[str, Route]] = {"tool": {}, "prompt": {}, "resource": {}, "resource_template": {}}
    for item in items:
        definition = definitions.get((item.origin_id, item.kind, item.name))
        if definition is None:  # the origin no longer offers it: not reachable
            continue
        exposed = dict(definition)
        if item.kind in ("tool", "prompt"):
            exposed["name"] = item.exposed_name
        maps[item.kind][item.exposed_name] = Route(
            origin_id=item.origin_id,
            kind=cast(ItemKind, item.kind),
            upstream_name=item.name,
            exposed_name=item.exposed_name,
            definition=exposed,
        )
    return ServerView(
        id=server.id,
        slug=server.slug,
        title=server.title,
        description=server.description,
        published=server.published,
        tools=maps["tool"],
        prompts=maps["prompt"],
        resources=maps["resource"],
        templates=tuple(maps["resource_template"].values()),
    )


async def _tokens(session: AsyncSession) -> dict[str, Principal]:
    now = datetime.now(UTC)
    rows = await session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.revoked_at.is_(None), ApiToken.expires_at > now)
    )
    return {
        token.token_hash: Principal(
            token_id=token.id,
            user_id=user.id,
            username=user.username,
            is_admin=user.is_admin,
            scopes=frozenset(token.scopes),
            server_ids=frozenset(token.server_ids),
            expires_at=token.expires_at.timestamp(),
        )
        for token, user in rows
    }
