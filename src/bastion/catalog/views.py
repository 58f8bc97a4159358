"""A virtual server as one member sees it through one token: only the items they may use.

Built from the snapshot on first use and cached in it, so the hot path pays a
dict lookup per request; every change replaces the snapshot and the cache.
"""

from __future__ import annotations

from dataclasses import replace

from bastion.catalog.snapshot import Route, ServerView, Snapshot
from bastion.governance.access import Member, may_use
from bastion.governance.permissions import Grants

__all__ = ["view_for"]

_KIND = {"tool": "tool", "prompt": "prompt", "resource": "resource", "resource_template": "resource"}
_MAX_VIEWS = 10_000


def view_for(snapshot: Snapshot, member: Member, limit: Grants | None, server: ServerView) -> ServerView:
    key = (member.user_id, limit, server.slug)
    view = snapshot.views.get(key)
    if view is None:
        view = _filter(snapshot, member, limit, server)
        if len(snapshot.views) >= _MAX_VIEWS:
            snapshot.views.clear()  # bounded: many users and tokens cannot grow it without limit
        snapshot.views[key] = view
    return view


def _filter(snapshot: Snapshot, member: Member, limit: Grants | None, server: ServerView) -> ServerView:
    denied: set[tuple[str, str]] = set()

    def keep(route: Route) -> bool:
        origin = snapshot.origin_access.get(route.origin_id)
        allowed = origin is not None and may_use(
            member, limit, _KIND[route.kind], server.slug, (origin.name, origin.placement), route.upstream_name
        )
        if not allowed:
            denied.add((route.kind, route.exposed_name))
        return allowed

    return replace(
        server,
        tools={name: r for name, r in server.tools.items() if keep(r)},
        prompts={name: r for name, r in server.prompts.items() if keep(r)},
        resources={name: r for name, r in server.resources.items() if keep(r)},
        templates=tuple(r for r in server.templates if keep(r)),
        denied=frozenset(denied),
    )
