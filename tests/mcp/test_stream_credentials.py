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


async def test_a_stream_whose_person_left_the_team_while_it_was_let_in_is_refused() -> None:
    """The check that let a GET in was made on one snapshot; a newer one, swapped in before the
    stream was registered to hear of changes, took the person out of the server's team (or the
    server out of their token's reach): the stream is refused, not held open until some other change."""
    from typing import cast

    from bastion.catalog.holder import SnapshotHolder
    from bastion.errors import Forbidden, NotFound
    from bastion.governance.access import Member
    from bastion.governance.permissions import Grants
    from bastion.identity.bearer import BearerResolver
    from bastion.identity.tokens import hash_token
    from bastion.mcp.methods import Methods
    from bastion.mcp.origin_check import OriginPolicy
    from bastion.mcp.transport import McpEndpoint

    def snapshot(epoch: int, teams: frozenset[str], reaches: str) -> Snapshot:
        shot = _team_server()
        shot = Snapshot(epoch=epoch, servers=shot.servers, origins={}, tokens={})
        shot.members["ann"] = Member("ann", "default", Grants.of_roles(["member"], {}), team_ids=teams)
        shot.tokens[hash_token("bst_ann")] = Principal(
            token_id="tok-ann", user_id="ann", username="ann", is_admin=False,
            scopes=frozenset({"mcp"}), server_ids=frozenset({reaches}), expires_at=time.time() + 60,
        )  # fmt: skip
        return shot

    checked = snapshot(1, frozenset({"finance"}), "s")
    scope = {"headers": [(b"authorization", b"Bearer bst_ann")]}
    refusals: tuple[tuple[Snapshot, type[Exception] | None], ...] = (
        (snapshot(2, frozenset(), "s"), NotFound),  # left the team
        (snapshot(2, frozenset({"finance"}), "elsewhere"), Forbidden),  # the token no longer reaches it
        (snapshot(2, frozenset({"finance"}), "s"), None),  # another change: still theirs, let in
    )
    for later, refused in refusals:

        async def load(shot: Snapshot = later) -> Snapshot:
            return shot

        async def read_epoch() -> int:
            return 2

        holder = SnapshotHolder(load, read_epoch)
        await holder.refresh()
        endpoint = McpEndpoint(
            holder=holder, sessions=await started_store(60), methods=cast(Methods, None), origins=OriginPolicy([]),
            bearer=BearerResolver(None), base_url="http://127.0.0.1", max_body_bytes=1024, max_json_depth=8,
        )  # fmt: skip
        if refused is None:
            await endpoint._reconfirm(scope, checked, checked.servers["books"])
            continue
        with pytest.raises(refused):
            await endpoint._reconfirm(scope, checked, checked.servers["books"])


async def test_a_stream_whose_tokens_networks_narrowed_while_it_was_let_in_is_refused() -> None:
    from dataclasses import replace
    from ipaddress import ip_network
    from typing import cast

    from bastion.catalog.holder import SnapshotHolder
    from bastion.governance.access import Member
    from bastion.governance.permissions import Grants
    from bastion.identity.bearer import BearerResolver
    from bastion.identity.token_rules import LocalQuota, TokenGate, TokenRefused, TokenRules, TokenUse
    from bastion.identity.tokens import hash_token
    from bastion.mcp.methods import Methods
    from bastion.mcp.origin_check import OriginPolicy
    from bastion.mcp.transport import McpEndpoint

    class NoLog:
        def record(self, use: TokenUse) -> None:
            raise AssertionError("nothing is logged here")

    def snapshot(epoch: int, networks: tuple[str, ...]) -> Snapshot:
        rules = TokenRules(networks=tuple(ip_network(n) for n in networks))
        shot = Snapshot(epoch=epoch, servers=_team_server().servers, origins={}, tokens={})
        shot.members["ann"] = Member("ann", "default", Grants.of_roles(["member"], {}), team_ids=frozenset({"finance"}))
        shot.tokens[hash_token("bst_ann")] = replace(
            _principal("tok-ann", "ann"), server_ids=frozenset({"s"}), rules=rules
        )
        return shot

    checked, narrowed = snapshot(1, ("127.0.0.0/8",)), snapshot(2, ("10.0.0.0/8",))

    async def load() -> Snapshot:
        return narrowed

    async def read_epoch() -> int:
        return 2

    holder = SnapshotHolder(load, read_epoch)
    await holder.refresh()
    gate = TokenGate(quota=LocalQuota(), log=NoLog(), client_address=lambda scope: "127.0.0.1")
    endpoint = McpEndpoint(
        holder=holder, sessions=await started_store(60), methods=cast(Methods, None), origins=OriginPolicy([]),
        bearer=BearerResolver(None), base_url="http://127.0.0.1", max_body_bytes=1024, max_json_depth=8, gate=gate,
    )  # fmt: skip
    scope = {"headers": [(b"authorization", b"Bearer bst_ann")]}
    with pytest.raises(TokenRefused):
        await endpoint._reconfirm(scope, checked, checked.servers["books"])


def _told(inbox: Inbox) -> list[str]:
    import orjson

    methods: list[str] = []
    while True:
        try:
            methods.append(orjson.loads(inbox.receive_nowait())["method"])
        except anyio.WouldBlock:
            return methods


async def test_list_changed_tells_each_person_only_of_lists_they_see_change() -> None:
    """A tool of an origin someone's roles (or token limit) leave out is added: they are not told
    (not even that something exists there); someone who may use it is. A change of what a token may
    use is a change of its lists too."""
    from dataclasses import replace

    from bastion.catalog.snapshot import OriginAccess, Route, ServerView
    from bastion.governance.access import Member, Placement
    from bastion.governance.permissions import Grants, parse_permissions

    place = Placement("default")
    payroll_only = Grants(parse_permissions(["tools:call@origin:payroll"]))
    everything = Grants.of_roles(["member"], {})

    def tool(origin: str, name: str) -> Route:
        return Route(origin, "tool", name, name, {"name": name, "inputSchema": {"type": "object"}})

    def snapshot(epoch: int, tools: list[Route], limit: Grants | None) -> Snapshot:
        server = ServerView("s", "books", "Books", "", True, tools={t.exposed_name: t for t in tools}, placement=place)
        shot = Snapshot(epoch=epoch, servers={"books": server}, origins={}, tokens={})
        shot.origin_access.update({o: OriginAccess(o, place, True) for o in ("payroll", "crm")})
        shot.members.update({"ann": Member("ann", "default", everything), "bob": Member("bob", "default", everything)})
        shot.tokens["h-bob"] = replace(_principal("tok-bob", "bob"), limit=limit)
        return shot

    store = await started_store(60)
    ann = store.create(server_id="s", token_id="user:ann:client:c1", protocol_version="2025-11-25", capabilities={})
    ann.limit = payroll_only  # an OAuth service client limited to payroll's tools
    bob = store.create(server_id="s", token_id="tok-bob", protocol_version="2025-11-25", capabilities={})
    inboxes = [ann.open_stream(), bob.open_stream()]
    first = snapshot(1, [tool("payroll", "pay")], None)
    crm_added = snapshot(2, [tool("payroll", "pay"), tool("crm", "lookup")], None)
    notifier = ChangeNotifier(store)
    await notifier.on_snapshot(first, crm_added)
    assert [_told(inbox) for inbox in inboxes] == [[], ["notifications/tools/list_changed"]]
    bob_narrowed = snapshot(3, [tool("payroll", "pay"), tool("crm", "lookup")], payroll_only)
    await notifier.on_snapshot(crm_added, bob_narrowed)
    assert [_told(inbox) for inbox in inboxes] == [[], ["notifications/tools/list_changed"]]
    payroll_changed = snapshot(4, [tool("payroll", "pay2"), tool("crm", "lookup")], payroll_only)
    await notifier.on_snapshot(bob_narrowed, payroll_changed)
    assert [_told(inbox) for inbox in inboxes] == [["notifications/tools/list_changed"]] * 2
    for session, inbox in zip((ann, bob), inboxes, strict=True):
        store.close(session.id)
        inbox.close()


def _principal(token_id: str, user_id: str) -> Principal:
    return Principal(
        token_id=token_id, user_id=user_id, username=user_id, is_admin=False,
        scopes=frozenset({"mcp"}), server_ids=frozenset({"s"}), expires_at=time.time() + 60,
    )  # fmt: skip


async def test_an_api_tokens_sessions_end_when_its_rules_change_not_when_its_uses_are_counted() -> None:
    """Its networks narrowed: a stream opened from an address no longer allowed ends (the session
    reopens only through the new rules' check). A reload that only counted uses ends nothing."""
    from dataclasses import replace
    from ipaddress import ip_network

    from bastion.identity.token_rules import TokenRules

    def shot(rules: TokenRules) -> Snapshot:
        snapshot = Snapshot(epoch=1, servers={}, origins={}, tokens={})
        snapshot.tokens["h"] = replace(_principal("tok-ann", "ann"), rules=rules)
        return snapshot

    store = await started_store(60)
    session = store.create(server_id="s", token_id="tok-ann", protocol_version="2025-11-25", capabilities={})
    inbox = session.open_stream()
    anywhere = TokenRules(uses_at_load=3)
    notifier = ChangeNotifier(store)
    await notifier.on_snapshot(shot(anywhere), shot(replace(anywhere, uses_at_load=9)))
    assert not _ended(inbox)
    await notifier.on_snapshot(shot(anywhere), shot(replace(anywhere, networks=(ip_network("10.0.0.0/8"),))))
    assert _ended(inbox)
    inbox.close()
