"""Streams opened with an OAuth access token are re-checked on every snapshot change; when the store
cannot say the token is still live, the stream ends (deny when undecided). A stream ends when the
token that opened it expires."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from bastion.catalog.snapshot import Snapshot
from bastion.http.asgi import Message
from bastion.identity.principal import Principal
from bastion.mcp.notify import ChangeNotifier
from bastion.mcp.sessions import SessionStore
from bastion.mcp.streaming import serve_event_stream
from tests.mcp.session_kit import started_store

pytestmark = pytest.mark.anyio

Inbox = MemoryObjectReceiveStream[bytes]


@asynccontextmanager
async def _streams(*credentials: str | None) -> AsyncIterator[tuple[SessionStore, list[Inbox]]]:
    store = await started_store(60)
    opened = [
        store.create(server_id="s", token_id=f"owner-{n}", protocol_version="2025-11-25", capabilities={})
        for n in range(len(credentials))
    ]
    inboxes = [session.open_stream(credential) for session, credential in zip(opened, credentials, strict=True)]
    try:
        yield store, inboxes
    finally:
        for session, inbox in zip(opened, inboxes, strict=True):
            store.close(session.id)
            inbox.close()


def _ended(inbox: Inbox) -> bool:
    try:
        inbox.receive_nowait()
    except anyio.EndOfStream:
        return True
    except anyio.WouldBlock:
        return False
    raise AssertionError("nothing was queued")


async def test_only_the_streams_of_tokens_no_longer_live_end() -> None:
    asked: list[set[str]] = []

    async def live_tokens(ids: Collection[str]) -> set[str]:
        asked.append(set(ids))
        return {"at-live"}

    async with _streams("at-live", "at-revoked", None) as (store, (live, revoked, api_token)):
        await ChangeNotifier(store, live_tokens).on_snapshot(Snapshot.empty(), Snapshot.empty())
        assert asked == [{"at-live", "at-revoked"}]  # one question for all; an API token's is not asked about
        assert not _ended(live) and _ended(revoked) and not _ended(api_token)


async def test_a_store_that_cannot_answer_ends_every_oauth_stream() -> None:
    async def unreachable(ids: Collection[str]) -> set[str]:
        raise OSError("connection refused")

    async with _streams("at-1", "at-2", None) as (store, (first, second, api_token)):
        await ChangeNotifier(store, unreachable).on_snapshot(Snapshot.empty(), Snapshot.empty())
        assert _ended(first) and _ended(second) and not _ended(api_token)


async def test_no_question_is_asked_while_no_oauth_stream_is_open() -> None:
    async def never(ids: Collection[str]) -> set[str]:
        raise AssertionError("asked with nothing to check")

    async with _streams(None) as (store, _inboxes):
        await ChangeNotifier(store, never).on_snapshot(Snapshot.empty(), Snapshot.empty())


async def test_a_stream_ends_when_the_token_that_opened_it_expires() -> None:
    lifetime = 0.3
    principal = Principal(
        token_id="t",
        user_id="u",
        username="u",
        is_admin=False,
        scopes=frozenset({"mcp"}),
        server_ids=frozenset({"s"}),
        expires_at=time.time() + lifetime,
    )
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def confirm() -> None:
        pass

    async with _streams() as (store, _):
        session = store.create(server_id="s", token_id="t", protocol_version="2025-11-25", capabilities={})
        started = time.monotonic()
        with anyio.fail_after(5):
            await serve_event_stream(session, receive, send, principal, confirm)
        assert time.monotonic() - started >= lifetime - 0.05
        store.close(session.id)
    assert sent[0]["status"] == 200
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


def _team_server(published: bool = True) -> Snapshot:
    from bastion.catalog.snapshot import ServerView
    from bastion.governance.access import Placement

    placement = Placement("default", visibility="team", team_ids=frozenset({"finance"}))
    return Snapshot(
        epoch=1,
        servers={"books": ServerView("s", "books", "Books", "", published, placement=placement)},
        origins={},
        tokens={},
    )


async def test_the_sessions_of_people_who_no_longer_see_their_server_end() -> None:
    """A team server's members keep their streams; one who left the team (or was removed) does not,
    as for an unpublished server. An API token's session also ends when its token no longer reaches it."""
    from bastion.governance.access import Member
    from bastion.governance.permissions import Grants

    def member(user_id: str, *teams: str) -> Member:
        return Member(user_id, "default", Grants.of_roles(["member"], {}), team_ids=frozenset(teams))

    def api_token(token_id: str, user_id: str, reaches: str) -> Principal:
        return Principal(
            token_id=token_id, user_id=user_id, username=user_id, is_admin=False,
            scopes=frozenset({"mcp"}), server_ids=frozenset({reaches}), expires_at=time.time() + 60,
        )  # fmt: skip

    store = await started_store(60)
    owners = ["user:ann:client:c1", "user:bob:client:c1", "user:gone:client:c1", "tok-cy", "tok-dee"]
    sessions = [store.create(server_id="s", token_id=o, protocol_version="2025-11-25", capabilities={}) for o in owners]
    inboxes = [session.open_stream() for session in sessions]
    old = _team_server()
    new = _team_server()
    new.members.update({"ann": member("ann", "finance"), "bob": member("bob"), "cy": member("cy", "finance")})
    new.members["dee"] = member("dee", "finance")
    new.tokens.update({"h1": api_token("tok-cy", "cy", "s"), "h2": api_token("tok-dee", "dee", "elsewhere")})
    await ChangeNotifier(store).on_snapshot(old, new)
    assert [_ended(inbox) for inbox in inboxes] == [False, True, True, False, True]
    for session, inbox in zip(sessions, inboxes, strict=True):
        store.close(session.id)
        inbox.close()
