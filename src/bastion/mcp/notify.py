"""Tells connected clients what changed when a new snapshot replaces the old one.

Lists that differ produce `notifications/*/list_changed` on the sessions' GET
streams; sessions whose server went away (or was unpublished) or whose token
was revoked are closed, so nothing keeps running on withdrawn access.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bastion.catalog.snapshot import ServerView, Snapshot
from bastion.mcp.sessions import SessionStore

__all__ = ["ChangeNotifier"]


def _tools(view: ServerView) -> list[dict[str, Any]]:
    return [r.definition for r in view.tools.values()]


def _prompts(view: ServerView) -> list[dict[str, Any]]:
    return [r.definition for r in view.prompts.values()]


def _resources(view: ServerView) -> list[dict[str, Any]]:
    return [r.definition for r in (*view.resources.values(), *view.templates)]


_LISTS: tuple[tuple[str, Callable[[ServerView], list[dict[str, Any]]]], ...] = (
    ("notifications/tools/list_changed", _tools),
    ("notifications/prompts/list_changed", _prompts),
    ("notifications/resources/list_changed", _resources),
)


class ChangeNotifier:
    def __init__(self, sessions: SessionStore) -> None:
        self._sessions = sessions

    async def on_snapshot(self, old: Snapshot, new: Snapshot) -> None:
        revoked = {p.token_id for p in old.tokens.values()} - {p.token_id for p in new.tokens.values()}
        if revoked:
            self._sessions.drop_token(revoked)
        new_by_id = {view.id: view for view in new.servers.values()}
        for view in old.servers.values():
            current = new_by_id.get(view.id)
            if current is None or not current.published:
                for session in self._sessions.of_server(view.id):
                    self._sessions.close(session.id)
            else:
                self._announce(view, current)

    def _announce(self, old: ServerView, new: ServerView) -> None:
        changed = [method for method, items in _LISTS if items(old) != items(new)]
        if not changed:
            return
        for session in self._sessions.of_server(new.id):
            for method in changed:
                session.notify(method)
