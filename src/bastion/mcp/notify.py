"""Tells connected clients what changed when a new snapshot replaces the old one.

Lists that differ, as each session's owner sees them through its token (roles,
teams, the token's limit), produce `notifications/*/list_changed` on the
sessions' GET streams: an item someone cannot use changes nothing they are told
of, not even that it exists. Sessions whose server went away (or was unpublished) or whose API
token was revoked or had its rules changed are closed, and so are the streams opened with an OAuth access
token that is no longer live (revoked: every revocation is a new snapshot), and
the sessions of people who no longer see their server (made private, a team
left, removed) or whose API token no longer reaches it, so nothing keeps running
on withdrawn access.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

import structlog

from bastion.catalog.snapshot import ServerView, Snapshot
from bastion.catalog.views import view_for
from bastion.governance.permissions import Grants
from bastion.identity.principal import Principal
from bastion.mcp.sessions import Session, SessionStore

__all__ = ["ChangeNotifier", "LiveTokens"]

log = structlog.get_logger(__name__)

# The store's answer: which of these OAuth access tokens (by id) are still live.
LiveTokens = Callable[[Collection[str]], Awaitable[set[str]]]


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


def _still_sees(snapshot: Snapshot, view: ServerView, owner: str, by_token: dict[str, Principal]) -> bool:
    """Whether the session's owner (`Principal.session_owner`) may still use `view`: an OAuth
    session's person sees it; an API token's person sees it and the token still reaches it. A token
    gone from the snapshot is revocation's to end (`drop_token`)."""
    if owner.startswith("user:"):
        member = snapshot.members.get(owner.removeprefix("user:").split(":client:", 1)[0])
        return member is not None and member.sees(view.placement)
    principal = by_token.get(owner)
    if principal is None:
        return True
    member = snapshot.members.get(principal.user_id)
    return member is not None and member.sees(view.placement) and principal.may_reach(view.id)


def _rules(principal: Principal) -> object:
    """What an API token's rules let in (its uses so far left out: they change with every load)."""
    rules = principal.rules
    return None if rules is None else (rules.networks, rules.not_before, rules.max_uses)


def _rules_changed(old: Snapshot, new: Snapshot) -> set[str]:
    """API tokens whose rules changed (its networks narrowed, say): their sessions end, as for a
    revocation, and reopen only through the new rules' check."""
    before = {p.token_id: _rules(p) for p in old.tokens.values()}
    return {p.token_id for p in new.tokens.values() if p.token_id in before and before[p.token_id] != _rules(p)}


class ChangeNotifier:
    def __init__(self, sessions: SessionStore, live_tokens: LiveTokens | None = None) -> None:
        self._sessions = sessions
        self._live_tokens = live_tokens

    async def on_snapshot(self, old: Snapshot, new: Snapshot) -> None:
        revoked = {p.token_id for p in old.tokens.values()} - {p.token_id for p in new.tokens.values()}
        revoked |= _rules_changed(old, new)
        if revoked:
            self._sessions.drop_token(revoked)
        await self._end_withdrawn_streams()
        new_by_id = {view.id: view for view in new.servers.values()}
        for view in old.servers.values():  # first what ends: nothing below may keep it running
            current = new_by_id.get(view.id)
            if current is None or not current.published:
                for session in self._sessions.of_server(view.id):
                    self._sessions.close(session.id)
        self._end_unseen(new)
        by_server: dict[str, list[Session]] = {}  # what is left, gone through once
        for session in self._sessions.all():
            by_server.setdefault(session.server_id, []).append(session)
        announce = _Announcer(old, new)
        for view in old.servers.values():
            current = new_by_id.get(view.id)
            if current is None:
                continue
            for session in by_server.get(view.id, []):
                for method in announce.changed(session, view, current):
                    session.notify(method)

    def _end_unseen(self, new: Snapshot) -> None:
        servers = {view.id: view for view in new.servers.values() if view.published}
        by_token = {principal.token_id: principal for principal in new.tokens.values()}
        for session in self._sessions.all():
            view = servers.get(session.server_id)
            if view is not None and not _still_sees(new, view, session.token_id, by_token):
                self._sessions.close(session.id)

    async def _end_withdrawn_streams(self) -> None:
        held = self._sessions.oauth_streams()
        if not held or self._live_tokens is None:
            return
        try:
            live = await self._live_tokens(held.keys())
        except Exception as exc:  # any store failure: liveness unconfirmed, so the streams end
            log.warning("stream_credentials_unchecked", error=type(exc).__name__, streams=len(held))
            live = set()
        for token_id, sessions in held.items():
            if token_id not in live:
                for session in sessions:
                    session.close_stream()


class _Announcer:
    """Which lists changed for a session's owner between two snapshots, as they see them: the
    server's lists filtered by their roles, teams and token limit, then and now (a change of
    those alone changes their lists too). Worked out once per owner and limit."""

    def __init__(self, old: Snapshot, new: Snapshot) -> None:
        self._old, self._new = old, new
        self._old_tokens = {p.token_id: p for p in old.tokens.values()}
        self._new_tokens = {p.token_id: p for p in new.tokens.values()}
        self._seen: dict[tuple[str, str, Grants | None, Grants | None], tuple[str, ...]] = {}
        self._same: dict[str, bool] = {}  # per server: its lists as they were (nothing to filter)

    def changed(self, session: Session, old: ServerView, new: ServerView) -> tuple[str, ...]:
        owner = session.token_id
        if owner.startswith("user:"):  # OAuth: the person, through the client's limit, if any
            user_id, before_limit, after_limit = (
                owner.removeprefix("user:").split(":client:", 1)[0],
                session.limit,
                session.limit,
            )
        else:
            now = self._new_tokens.get(owner)
            if now is None:
                return ()  # revoked: `drop_token` ends the session
            then = self._old_tokens.get(owner, now)
            user_id, before_limit, after_limit = now.user_id, then.limit, now.limit
        key = (new.id, user_id, before_limit, after_limit)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = self._compare(user_id, before_limit, after_limit, old, new)
        return found

    def _compare(
        self, user_id: str, before_limit: Grants | None, after_limit: Grants | None, old: ServerView, new: ServerView
    ) -> tuple[str, ...]:
        member = self._new.members.get(user_id)
        if member is None or not member.sees(new.placement):
            return ()  # no longer theirs: `_end_unseen` ends the session
        former = self._old.members.get(user_id)
        if former == member and before_limit == after_limit and self._unchanged(old, new):
            return ()  # the usual case: most snapshots change neither the server nor this person
        after = view_for(self._new, member, after_limit, new)
        before = view_for(self._old, former, before_limit, old) if former is not None else None
        # Someone new to the tenant saw nothing before: every list they now see is news to them.
        return tuple(method for method, items in _LISTS if (items(before) if before else []) != items(after))

    def _unchanged(self, old: ServerView, new: ServerView) -> bool:
        same = self._same.get(new.id)
        if same is None:
            same = self._same[new.id] = all(items(old) == items(new) for _, items in _LISTS)
        return same
