"""The OAuth store on both backends: single-use codes and refresh tokens under concurrency,
family revocation that reaches the data plane, consents."""

from __future__ import annotations

import time

import anyio
import pytest

from bastion.bus import ChangeEvent, MemoryBus
from bastion.identity.tokens import hash_token
from bastion.oauth.provider import CodeRecord, Grant
from bastion.store.db import Database
from bastion.store.repos import servers, tokens
from bastion.store.repos.oauth import SqlOAuthStore
from bastion.store.tenancy import SYSTEM

pytestmark = pytest.mark.anyio


async def _grant(db: Database, family: str = "family-1") -> Grant:
    async with db.session(SYSTEM) as s:
        user = await tokens.create_user(s, username=f"user-{family}", password_hash="x", is_admin=False)
        server = await servers.create(s, slug=f"srv-{family}", title="S", description="")
        return Grant(family_id=family, client_id="client-1", user_id=user.id, server_id=server.id, scopes=("mcp",))


async def test_a_code_is_taken_once_even_by_concurrent_redemptions(db: Database) -> None:
    store = SqlOAuthStore(db, MemoryBus())
    grant = await _grant(db)
    code = CodeRecord(
        code_hash=hash_token("the code"),
        grant=grant,
        redirect_uri="http://127.0.0.1/cb",
        code_challenge="c" * 43,
        expires_at=time.time() + 60,
    )
    await store.save_code(code)
    taken: list[bool] = []

    async def redeem() -> None:
        record = await store.take_code(code.code_hash, time.time())
        assert record is not None and record.grant == grant
        taken.append(record.used)

    async with anyio.create_task_group() as tasks:
        for _ in range(4):
            tasks.start_soon(redeem)
    assert sorted(taken) == [False, True, True, True]  # exactly one first use
    assert await store.take_code(hash_token("no such code"), time.time()) is None


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

    first = await store.take_refresh(hash_token("refresh"), now)
    again = await store.take_refresh(hash_token("refresh"), now)
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


async def test_consent_is_remembered_and_widened_not_narrowed(db: Database) -> None:
    store = SqlOAuthStore(db, MemoryBus())
    grant = await _grant(db, "family-3")
    assert await store.consented_scopes(grant.user_id, "client-1", grant.server_id) is None
    await store.save_consent(grant.user_id, "client-1", grant.server_id, frozenset({"mcp:read"}))
    await store.save_consent(grant.user_id, "client-1", grant.server_id, frozenset({"mcp:write"}))
    assert await store.consented_scopes(grant.user_id, "client-1", grant.server_id) == frozenset(
        {"mcp:read", "mcp:write"}
    )
