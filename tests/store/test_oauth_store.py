"""The OAuth store on both backends: single-use codes and refresh tokens under concurrency,
family revocation that reaches the data plane, consents."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from alembic import command
from sqlalchemy import select

from bastion.bus import ChangeEvent, MemoryBus
from bastion.errors import InvalidGrant, Unavailable
from bastion.identity.tokens import hash_token
from bastion.oauth.provider import CodeRecord, Grant
from bastion.store.db import Database, _alembic_config
from bastion.store.models import OAuthFamily, OAuthToken, SpentId
from bastion.store.repos import servers, tokens
from bastion.store.repos.consents import list_consents, withdraw_consent
from bastion.store.repos.oauth import SqlOAuthStore, hold_live_family
from bastion.store.repos.spent import is_spent, spend
from bastion.store.tenancy import SYSTEM

pytestmark = pytest.mark.anyio


async def _grant(db: Database, family: str = "family-1") -> Grant:
    async with db.session(SYSTEM) as s:
        user = await tokens.create_user(s, username=f"user-{family}", password_hash="x", is_admin=False)
        server = await servers.create(s, slug=f"srv-{family}", title="S", description="")
        return Grant(family_id=family, client_id="client-1", user_id=user.id, server_id=server.id, scopes=("mcp",))


def _access_row(grant: Grant, token: str, expires_at: float) -> OAuthToken:
    """An access token's row as a save in progress adds it (the tests hold that save open)."""
    return OAuthToken(
        token_hash=hash_token(token),
        kind="access",
        family_id=grant.family_id,
        client_id=grant.client_id,
        user_id=grant.user_id,
        server_id=grant.server_id,
        scopes=list(grant.scopes),
        expires_at=datetime.fromtimestamp(expires_at, UTC),
    )


def _code(grant: Grant, code: str) -> CodeRecord:
    return CodeRecord(hash_token(code), grant, "http://127.0.0.1/cb", "c" * 43, expires_at=time.time() + 60)


async def test_a_code_is_taken_once_even_by_concurrent_redemptions(db: Database) -> None:
    store = SqlOAuthStore(db, MemoryBus())
    grant = await _grant(db)
    code = _code(grant, "the code")
    await store.save_code(code)
    taken: list[bool] = []

    async def redeem() -> None:
        record = await store.take_code(code.code_hash, time.time(), code.grant.client_id)
        assert record is not None and record.grant == grant
        taken.append(record.used)

    async with anyio.create_task_group() as tasks:
        for _ in range(4):
            tasks.start_soon(redeem)
    assert sorted(taken) == [False, True, True, True]  # exactly one first use
    assert await store.take_code(hash_token("no such code"), time.time(), "c") is None


async def test_another_client_cannot_spend_a_code(db: Database) -> None:
    """RFC 9700 §4.14.2: a client that presents another's code (without its credentials) is told
    nothing and spends nothing, so it cannot make the owner's redemption look like a replay."""
    store = SqlOAuthStore(db, MemoryBus())
    code = _code(await _grant(db, "family-6"), "code-6")
    await store.save_code(code)
    assert await store.take_code(code.code_hash, time.time(), "client-2") is None
    first = await store.take_code(code.code_hash, time.time(), "client-1")
    assert first is not None and not first.used


async def test_a_take_given_back_is_the_one_made_then_and_no_other(db: Database) -> None:
    """`give_back` undoes the take made at its moment (the store failed to save what it was for);
    a later take, or another token, stays as it is."""
    store = SqlOAuthStore(db, MemoryBus())
    grant = await _grant(db, "family-8")
    code = _code(grant, "code-8")
    await store.save_code(code)
    now = time.time()
    await store.save_tokens(grant, [(hash_token("refresh-8"), "refresh", now + 3600)], now)
    taken_at = now + 1.25
    assert (await store.take_code(code.code_hash, taken_at, "client-1")) is not None
    assert (await store.take_refresh(hash_token("refresh-8"), taken_at, "client-1")) is not None
    await store.give_back("code", code.code_hash, taken_at + 0.5)  # another moment: not this take
    await store.give_back("refresh", hash_token("refresh-8"), taken_at + 0.5)
    code_again = await store.take_code(code.code_hash, now + 2, "client-1")
    refresh_again = await store.take_refresh(hash_token("refresh-8"), now + 2, "client-1")
    assert code_again is not None and code_again.used and refresh_again is not None and refresh_again.used
    await store.give_back("code", code.code_hash, taken_at)
    await store.give_back("refresh", hash_token("refresh-8"), taken_at)
    code_back = await store.take_code(code.code_hash, now + 3, "client-1")
    refresh_back = await store.take_refresh(hash_token("refresh-8"), now + 3, "client-1")
    assert code_back is not None and not code_back.used and refresh_back is not None and not refresh_back.used


async def test_a_consent_withdrawn_while_its_code_is_being_redeemed_leaves_no_live_token(db: Database) -> None:
    """The redemption took the code before the withdrawal and saves its tokens after: the family
    the withdrawal revoked ahead of them refuses the save."""
    store = SqlOAuthStore(db, MemoryBus())
    grant = await _grant(db, "family-7")
    code = _code(grant, "code-7")
    await store.save_code(code)
    taken = await store.take_code(code.code_hash, time.time(), "client-1")
    assert taken is not None and not taken.used
    await store.save_consent(grant.user_id, "client-1", grant.server_id, frozenset({"mcp"}))
    [consent] = await list_consents(db, grant.user_id)
    await withdraw_consent(db, MemoryBus(), grant.user_id, consent.id)
    with pytest.raises(InvalidGrant, match="grant was revoked"):
        await store.save_tokens(grant, [(hash_token("access-7"), "access", time.time() + 600)], time.time())
    assert await store.access_principal(hash_token("access-7")) is None


async def test_a_refresh_token_rotates_once_and_its_family_revocation_reaches_the_data_plane(db: Database) -> None:
    bus = MemoryBus()
    events: list[ChangeEvent] = []

    async def seen(event: ChangeEvent) -> None:
        events.append(event)

    bus.subscribe(seen)
    store = SqlOAuthStore(db, bus)
    grant = await _grant(db, "family-2")
    now = time.time()
    await store.save_tokens(grant, [(hash_token("access"), "access", now + 600)], now)
    await store.save_tokens(grant, [(hash_token("refresh"), "refresh", now + 3600)], now)

    principal = await store.access_principal(hash_token("access"))
    assert principal is not None and principal.grant_id == "family-2" and principal.client_id == "client-1"
    assert principal.server_ids == frozenset({grant.server_id}) and principal.scopes == frozenset({"mcp"})
    assert await store.access_principal(hash_token("refresh")) is None  # a refresh token is no access token

    assert await store.take_refresh(hash_token("refresh"), now, "client-2") is None  # another client: untouched
    first = await store.take_refresh(hash_token("refresh"), now, "client-1")
    again = await store.take_refresh(hash_token("refresh"), now, "client-1")
    assert first is not None and not first.used and again is not None and again.used
    # Issued and expiring on one clock reading: the lifetime is exact whatever the fraction of a second.
    assert abs(first.issued_at - now) < 1e-3 and round(first.expires_at - first.issued_at, 3) == 3600

    epoch = await db.read_epoch()
    await store.revoke_family("family-2")
    assert await db.read_epoch() == epoch + 1
    assert events == [ChangeEvent("tokens", "family-2")]
    assert await store.access_principal(hash_token("access")) is None
    record = await store.find_token(hash_token("refresh"))
    assert record is not None and record.revoked


async def _live_tokens(store: SqlOAuthStore, hashes: list[str]) -> list[str]:
    records = [await store.find_token(token_hash) for token_hash in hashes]
    return [r.token_hash for r in records if r is not None and not r.revoked]


async def test_a_rotation_saved_after_a_replay_revoked_its_family_is_refused_and_leaves_nothing_live(
    db: Database,
) -> None:
    """A refresh token presented twice at once: the loser revokes the family between the winner's
    rotation and the winner's save. The winner's new tokens must not be live."""
    store = SqlOAuthStore(db, MemoryBus())
    grant = await _grant(db, "family-4")
    now = time.time()
    await store.save_tokens(grant, [(hash_token("refresh-4"), "refresh", now + 3600)], now)
    winner = await store.take_refresh(hash_token("refresh-4"), now, "client-1")
    loser = await store.take_refresh(hash_token("refresh-4"), now, "client-1")
    assert winner is not None and not winner.used and loser is not None and loser.used
    await store.revoke_family(loser.grant.family_id)  # what the refresh grant does on a replay
    with pytest.raises(InvalidGrant, match="grant was revoked"):
        await store.save_tokens(grant, [(hash_token("new-access"), "access", now + 600)], now)
    assert await store.find_token(hash_token("new-access")) is None  # nothing half-saved
    assert await store.access_principal(hash_token("new-access")) is None


async def test_a_code_replayed_before_the_first_redemption_saved_anything_leaves_no_live_token(db: Database) -> None:
    store = SqlOAuthStore(db, MemoryBus())
    grant = await _grant(db, "family-5")
    code = _code(grant, "code-5")
    await store.save_code(code)
    first = await store.take_code(code.code_hash, time.time(), code.grant.client_id)
    replay = await store.take_code(code.code_hash, time.time(), code.grant.client_id)
    assert first is not None and not first.used and replay is not None and replay.used
    await store.revoke_family(replay.grant.family_id)  # no token of the family exists yet
    with pytest.raises(InvalidGrant):
        await store.save_tokens(grant, [(hash_token("access-5"), "access", time.time() + 600)], time.time())
    assert await store.find_token(hash_token("access-5")) is None


async def test_a_revocation_that_starts_while_a_rotation_saves_revokes_what_it_saved(db: Database) -> None:
    """The order the database must keep: the rotation holds its family while it saves; the
    revocation waits for it, then revokes the tokens it committed (PostgreSQL: a row lock, whose
    waiting statement would not see rows committed after it began without the family row;
    SQLite: the single writer)."""
    store = SqlOAuthStore(db, MemoryBus())
    grant = await _grant(db, "family-6")
    now = time.time()
    await store.save_tokens(grant, [(hash_token("refresh-6"), "refresh", now + 3600)], now)
    revoked = anyio.Event()

    async def revoke() -> None:
        await store.revoke_family("family-6")
        revoked.set()

    async with anyio.create_task_group() as tasks:
        async with db.session(SYSTEM) as session:  # the rotation's save, held open
            await hold_live_family(session, "family-6")
            tasks.start_soon(revoke)
            await anyio.sleep(0.3)
            assert not revoked.is_set()  # waits for the save to commit
            session.add(_access_row(grant, "access-6", now + 600))
        with anyio.fail_after(10):
            await revoked.wait()
    assert await _live_tokens(store, [hash_token("refresh-6"), hash_token("access-6")]) == []
    assert await store.find_token(hash_token("access-6")) is not None  # saved, then revoked


async def test_concurrent_presentations_of_one_refresh_token_leave_no_token_of_the_family_live(db: Database) -> None:
    """Each of several callers presents the same refresh token and, if it won the rotation, saves
    new tokens; the replays revoke the family. Whatever the interleaving, nothing stays live."""
    store = SqlOAuthStore(db, MemoryBus())
    for trial in range(5):
        family = f"family-7-{trial}"
        grant = await _grant(db, family)
        now = time.time()
        await store.save_tokens(grant, [(hash_token(f"rt-{family}"), "refresh", now + 3600)], now)
        saved: list[str] = []

        async def present(
            n: int, grant: Grant = grant, family: str = family, now: float = now, saved: list[str] = saved
        ) -> None:
            record = await store.take_refresh(hash_token(f"rt-{family}"), now, "client-1")
            assert record is not None
            if record.used:
                await store.revoke_family(family)
                return
            for kind in ("access", "refresh"):
                token_hash = hash_token(f"{kind}-{family}-{n}")
                try:
                    await store.save_tokens(grant, [(token_hash, kind, now + 600)], now)
                except InvalidGrant:
                    return
                saved.append(token_hash)

        async with anyio.create_task_group() as tasks:
            for n in range(4):
                tasks.start_soon(present, n)
        assert await _live_tokens(store, [hash_token(f"rt-{family}"), *saved]) == []


def _exchanged(grant: Grant, family: str, source: str) -> Grant:
    return dataclasses.replace(grant, family_id=family, client_id="agent", source=hash_token(source))


async def test_tokens_exchanged_for_a_token_die_with_it_its_family_and_each_other(db: Database) -> None:
    """RFC 8693: a delegated token (and one delegated from it) never outlives its source."""
    store = SqlOAuthStore(db, MemoryBus())
    user = await _grant(db, "family-11")
    now = time.time()
    await store.save_tokens(user, [(hash_token("at-11"), "access", now + 600)], now)
    await store.save_tokens(user, [(hash_token("rt-11"), "refresh", now + 3600)], now)
    for family, source in (("x-11", "at-11"), ("y-11", "x-token-11"), ("z-11", "at-11")):
        token = {"x-11": "x-token-11", "y-11": "y-token-11", "z-11": "z-token-11"}[family]
        await store.save_tokens(_exchanged(user, family, source), [(hash_token(token), "access", now + 60)], now)
    chain = [hash_token(t) for t in ("x-token-11", "y-token-11", "z-token-11")]
    assert await _live_tokens(store, chain) == chain

    await store.revoke_token(hash_token("at-11"))  # RFC 7009, the user's access token alone
    assert await _live_tokens(store, [hash_token("rt-11"), *chain]) == [hash_token("rt-11")]
    with pytest.raises(InvalidGrant, match="subject token was revoked"):
        await store.save_tokens(_exchanged(user, "w-11", "at-11"), [(hash_token("w-11"), "access", now + 60)], now)
    assert await store.find_token(hash_token("w-11")) is None

    # The grant withdrawn (its refresh token revoked: the whole family): what was exchanged goes too.
    await store.save_tokens(user, [(hash_token("at-11b"), "access", now + 600)], now)
    await store.save_tokens(_exchanged(user, "v-11", "at-11b"), [(hash_token("v-11"), "access", now + 60)], now)
    await store.revoke_token(hash_token("rt-11"))
    assert await _live_tokens(store, [hash_token("at-11b"), hash_token("v-11")]) == []


@pytest.mark.parametrize("revoked_is", ["the subject token", "its grant"])
async def test_a_revocation_that_starts_while_an_exchange_saves_revokes_what_it_saved(
    db: Database, revoked_is: str
) -> None:
    store = SqlOAuthStore(db, MemoryBus())
    family = f"family-12-{revoked_is[-5:]}"
    user = await _grant(db, family)
    now = time.time()
    await store.save_tokens(user, [(hash_token(f"at-{family}"), "access", now + 600)], now)
    exchanged = _exchanged(user, f"x-{family}", f"at-{family}")
    revoked = anyio.Event()

    async def revoke() -> None:
        if revoked_is == "its grant":
            await store.revoke_family(family)
        else:
            await store.revoke_token(hash_token(f"at-{family}"))
        revoked.set()

    async with anyio.create_task_group() as tasks:
        async with db.session(SYSTEM) as session:  # the exchange's save, held open
            await hold_live_family(session, exchanged.family_id, source=exchanged.source)
            tasks.start_soon(revoke)
            await anyio.sleep(0.3)
            assert not revoked.is_set()  # waits for the save to commit
            session.add(_access_row(exchanged, f"x-token-{family}", now + 60))
        with anyio.fail_after(10):
            await revoked.wait()
    assert await _live_tokens(store, [hash_token(f"at-{family}"), hash_token(f"x-token-{family}")]) == []
    assert await store.find_token(hash_token(f"x-token-{family}")) is not None  # saved, then revoked


async def test_live_access_tokens_answers_for_more_ids_than_one_statement_takes(db: Database) -> None:
    store = SqlOAuthStore(db, MemoryBus())
    grant = await _grant(db, "family-13")
    now = time.time()
    names = ("at-13a", "at-13b", "at-13c")
    await store.save_tokens(grant, [(hash_token(n), "access", now + 600) for n in names], now)
    await store.save_tokens(grant, [(hash_token("rt-13"), "refresh", now + 3600)], now)
    await store.revoke_token(hash_token("at-13b"))
    async with db.session(SYSTEM) as session:
        ids = {
            row.token_hash: row.id
            for row in await session.scalars(
                select(OAuthToken).where(OAuthToken.token_hash.in_([hash_token(n) for n in (*names, "rt-13")]))
            )
        }
    unknown = [f"no-such-{n}" for n in range(2500)]
    asked = [*unknown[:1200], *ids.values(), *unknown[1200:]]
    live = await store.live_access_tokens(asked)
    assert live == {ids[hash_token("at-13a")], ids[hash_token("at-13c")]}  # not the revoked, not the refresh token


async def test_upgrading_gives_every_grant_issued_before_a_live_family(db: Database) -> None:
    store = SqlOAuthStore(db, MemoryBus())
    issued = await _grant(db, "family-8")
    coded = await _grant(db, "family-9")
    replayed = await _grant(db, "family-10")
    now = time.time()
    await store.save_tokens(issued, [(hash_token("refresh-8"), "refresh", now + 3600)], now)
    await store.save_tokens(replayed, [(hash_token("refresh-10"), "refresh", now + 3600)], now)
    await store.revoke_family("family-10")
    await store.save_code(_code(coded, "code-9"))
    async with db.engine.begin() as conn:  # back to before families were rows, the grants kept
        await conn.run_sync(lambda sync: command.downgrade(_alembic_config(sync), "0009"))
    await db.migrate()
    async with db.session(SYSTEM) as session:  # rows before any rotation: a rotation and a revocation meet on them
        families = {f.family_id: f.revoked_at for f in await session.scalars(select(OAuthFamily))}
    assert families["family-8"] is None and families["family-9"] is None
    assert families["family-10"] is not None  # revoked before the upgrade: stays revoked
    assert set(families) == {"family-8", "family-9", "family-10"}
    await store.save_tokens(issued, [(hash_token("access-8"), "access", now + 600)], now)  # still live
    await store.save_tokens(coded, [(hash_token("access-9"), "access", now + 600)], now)
    await store.revoke_family("family-9")
    assert await _live_tokens(store, [hash_token("access-8"), hash_token("access-9")]) == [hash_token("access-8")]
    with pytest.raises(InvalidGrant):
        await store.save_tokens(coded, [(hash_token("late-9"), "access", now + 600)], now)


async def test_consent_is_remembered_and_widened_not_narrowed(db: Database) -> None:
    store = SqlOAuthStore(db, MemoryBus())
    grant = await _grant(db, "family-3")
    assert await store.consented_scopes(grant.user_id, "client-1", grant.server_id) is None
    await store.save_consent(grant.user_id, "client-1", grant.server_id, frozenset({"mcp:read"}))
    await store.save_consent(grant.user_id, "client-1", grant.server_id, frozenset({"mcp:write"}))
    assert await store.consented_scopes(grant.user_id, "client-1", grant.server_id) == frozenset(
        {"mcp:read", "mcp:write"}
    )


async def test_an_assertion_is_used_once_across_replicas_even_in_its_leeway_and_its_mark_goes_after(
    db: Database, migrated_url: str
) -> None:
    """Two stores on one database, as two replicas have: of concurrent first uses exactly one wins,
    and a replay to the other replica is refused as well."""
    other = Database(migrated_url)
    try:
        stores = [SqlOAuthStore(db, MemoryBus()), SqlOAuthStore(other, MemoryBus())]
        now = time.time()
        won: list[bool] = []

        async def use(store: SqlOAuthStore) -> None:
            won.append(await store.use_once("k" * 64, now + 300, now))

        async with anyio.create_task_group() as tasks:
            for store in stores * 3:
                tasks.start_soon(use, store)
        assert sorted(won) == [False] * 5 + [True]
        assert not await stores[1].use_once("k" * 64, now + 300, now + 1)
        # One presented in its verifier's leeway, past its exp, is used once too: the mark outlives
        # the exp (cleared at the exp itself, it was gone again at once).
        assert await stores[1].use_once("e" * 64, now - 10, now)
        assert not await stores[0].use_once("e" * 64, now - 10, now + 20)
        # Marks are cleared only well after their expiry; an exp no date can hold is kept a decade.
        assert await stores[0].use_once("n" * 64, now + 2000, now + 1000)
        assert await stores[0].use_once("x" * 64, 1e20, now)
        async with db.session(SYSTEM) as session:
            kept = set((await session.scalars(select(SpentId.key))).all())
        assert kept == {"n" * 64, "x" * 64}
    finally:
        await other.close()


async def test_a_store_that_does_not_answer_is_unavailable_with_nothing_marked(tmp_path: Path) -> None:
    """Not a 500, and not a guess: whether a session was signed out, or an assertion used, is 503."""
    down = Database(f"sqlite+aiosqlite:///{tmp_path}/missing-dir/nope.db")  # cannot be opened
    try:
        with pytest.raises(Unavailable):
            await is_spent(down, "k" * 64)
        with pytest.raises(Unavailable):
            await spend(down, "k" * 64, time.time() + 60, time.time())
    finally:
        await down.close()
