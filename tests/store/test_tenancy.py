"""Tenant scoping in the store itself, on SQLite and PostgreSQL.

A session scoped to one tenant cannot read, change or delete another tenant's
rows, whatever the query looks like, and cannot write a row into another tenant.
"""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import delete, func, select, text, update

from bastion.errors import Forbidden, NotFound, Unavailable
from bastion.store.db import Database, _alembic_config
from bastion.store.models import Origin, OriginItem, ServerItem, Team, Tenant, User, VirtualServer
from bastion.store.repos import origins, servers, teams
from bastion.store.repos.users import FederatedLogin, save_federated
from bastion.store.tenancy import SYSTEM, Tenancy

pytestmark = pytest.mark.anyio

TOOL = {"name": "get_order", "inputSchema": {"type": "object"}}
A, B = Tenancy.of("default"), Tenancy.of("t-b")


async def _two_tenants(db: Database) -> dict[str, str]:
    """The same names in both tenants: an origin with an item, a server composed of it, a team, a user."""
    async with db.session(SYSTEM) as s:
        s.add(Tenant(id="t-b", slug="b", name="B"))
    ids: dict[str, str] = {}
    for label, scope in (("a", A), ("b", B)):
        async with db.session(scope) as s:
            origin = await origins.create(
                s, name="inventory", transport="stdio", url=None, command=["x"], timeout_seconds=None
            )
            await origins.save_discovery(
                s, origin, items=[("tool", "get_order", TOOL)], protocol_version=None, error=None
            )
            server = await servers.create(s, slug=f"srv-{label}", title="", description="")
            await servers.compose(s, server, origin_id=origin.id, prefix="", names=None, aliases={})
            team = await teams.create(s, "ops")
            user = User(username=f"user-{label}", password_hash="x")
            s.add(user)
            await s.flush()
            ids |= {
                f"origin-{label}": origin.id,
                f"server-{label}": server.id,
                f"team-{label}": team.id,
                f"user-{label}": user.id,
            }
    return ids


async def test_a_tenant_session_reads_only_its_own_rows(db: Database) -> None:
    ids = await _two_tenants(db)
    async with db.session(B) as s:
        assert [o.id for o in await s.scalars(select(Origin))] == [ids["origin-b"]]
        assert await s.get(Origin, ids["origin-a"]) is None
        assert await s.get(VirtualServer, ids["server-a"]) is None
        assert await s.get(User, ids["user-a"]) is None
        assert await s.scalar(select(func.count()).select_from(Team)) == 1
        # Child tables follow their parent's tenant, and joins are filtered on every side.
        assert {i.origin_id for i in await s.scalars(select(OriginItem))} == {ids["origin-b"]}
        assert {i.server_id for i in await s.scalars(select(ServerItem))} == {ids["server-b"]}
        joined = await s.execute(
            select(VirtualServer.id, Origin.id)
            .join(ServerItem, ServerItem.server_id == VirtualServer.id)
            .join(Origin, Origin.id == ServerItem.origin_id)
        )
        assert joined.all() == [(ids["server-b"], ids["origin-b"])]
        # Lookups by name find this tenant's row, never the other's of the same name.
        assert (await origins.get(s, "inventory")).id == ids["origin-b"]
        with pytest.raises(NotFound):
            await servers.get(s, "srv-a")
    async with db.session(SYSTEM) as s:
        assert await s.scalar(select(func.count()).select_from(Origin)) == 2


async def test_bulk_updates_and_deletes_stop_at_the_tenant(db: Database) -> None:
    ids = await _two_tenants(db)
    async with db.session(B) as s:
        await s.execute(update(VirtualServer).values(published=True))
        await s.execute(delete(Team))
        await s.execute(delete(ServerItem))
    async with db.session(SYSTEM) as s:
        published = {v.id: v.published for v in await s.scalars(select(VirtualServer))}
        assert published == {ids["server-a"]: False, ids["server-b"]: True}
        assert [t.id for t in await s.scalars(select(Team))] == [ids["team-a"]]
        assert {i.server_id for i in await s.scalars(select(ServerItem))} == {ids["server-a"]}


async def test_writes_into_another_tenant_are_refused_and_nothing_is_kept(db: Database) -> None:
    ids = await _two_tenants(db)
    with pytest.raises(Forbidden):
        async with db.session(B) as s:
            s.add(Team(name="sneaky", tenant_id="default"))
    with pytest.raises(Forbidden):
        async with db.session(B) as s:
            origin = await s.get(Origin, ids["origin-b"])
            assert origin is not None
            origin.tenant_id = "default"  # moving a row out of the tenant
    async with db.session(SYSTEM) as s:
        assert await s.scalar(select(func.count()).select_from(Team).where(Team.name == "sneaky")) == 0
        assert await s.scalar(select(Origin.tenant_id).where(Origin.id == ids["origin-b"])) == "t-b"


async def test_new_rows_take_the_session_tenant(db: Database) -> None:
    await _two_tenants(db)
    async with db.session(B) as s:
        team = await teams.create(s, "fresh")
    assert team.tenant_id == "t-b"


async def test_a_federated_sign_in_creates_the_user_in_the_providers_tenant(db: Database) -> None:
    await _two_tenants(db)
    login = FederatedLogin("corp", "sub-1", "corp:ann", ("member",), tenant="b")
    async with db.session(SYSTEM) as s:
        user, created = await save_federated(s, login)
    assert created
    assert user.tenant_id == "t-b"
    async with db.session(B) as s:
        assert await s.get(User, user.id) is not None
    async with db.session(A) as s:
        assert await s.get(User, user.id) is None
    with pytest.raises(Unavailable, match="names tenant 'nowhere'"):
        async with db.session(SYSTEM) as s:
            await save_federated(s, FederatedLogin("corp", "sub-2", "corp:bob", (), tenant="nowhere"))


async def test_upgrading_puts_existing_rows_in_the_default_tenant_keeping_what_they_could_do(
    fresh_db: Database,
) -> None:
    async with fresh_db.engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(_alembic_config(sync), "0003"))
        await conn.execute(
            text(
                "INSERT INTO users (id, username, password_hash, is_admin, roles, failed_logins, created_at) VALUES "
                "('u1', 'old', 'x', false, '[]', 0, CURRENT_TIMESTAMP), "
                "('u2', 'boss', 'x', true, '[]', 0, CURRENT_TIMESTAMP)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO origins (id, name, transport, command, created_at) "
                "VALUES ('o1', 'inventory', 'stdio', '[\"x\"]', CURRENT_TIMESTAMP)"
            )
        )
    await fresh_db.migrate()
    async with fresh_db.session(A) as s:
        users = {u.username: u for u in await s.scalars(select(User))}
        origin = await s.get(Origin, "o1")
    assert users["old"].roles == ["member"] and users["boss"].roles == [] and users["boss"].is_admin
    assert {u.tenant_id for u in users.values()} == {"default"}
    assert origin is not None and origin.status == "approved" and origin.visibility == "tenant"
