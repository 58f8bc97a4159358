"""Tenant isolation inside the store: a session scoped to a tenant sees and writes only that tenant.

Every `Database.session` names its scope, so no query runs without one having
been chosen. In a tenant scope, SQLAlchemy's `do_orm_execute` hook adds
`with_loader_criteria` to every ORM SELECT, UPDATE and DELETE: rows of
`TenantOwned` tables must carry the tenant's id, and rows of child tables
(origin items, server items) must belong to a parent that does. `before_flush`
stamps new rows with the tenant and refuses a row of another tenant. Handlers
therefore never write a tenant filter, and cannot forget one. The system scope
(`SYSTEM`) is for what acts for every tenant at once: the snapshot loader, the
OAuth store, bootstrap, migrations.

Not covered: textual SQL and Core statements on tables (not ORM entities); the
store uses neither for tenant-owned tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from bastion.errors import Forbidden
from bastion.store.models import Origin, OriginItem, ServerItem, TenantOwned, VirtualServer

__all__ = ["INFO_KEY", "SYSTEM", "Tenancy", "install", "scope_of"]

INFO_KEY = "bastion.tenant"


@dataclass(frozen=True, slots=True)
class Tenancy:
    """What a session may see: one tenant, or (`tenant_id=None`) every tenant."""

    tenant_id: str | None

    @classmethod
    def of(cls, tenant_id: str) -> Tenancy:
        return cls(tenant_id)


SYSTEM = Tenancy(None)


def scope_of(session: Session) -> Tenancy:
    scope = session.info.get(INFO_KEY)
    if not isinstance(scope, Tenancy):  # a session made outside Database.session: refuse rather than guess
        raise Forbidden("a store session without a declared tenant scope")
    return scope


def _criteria(execute_state: ORMExecuteState) -> None:
    scope = scope_of(execute_state.session)
    if scope.tenant_id is None:
        return
    if not (execute_state.is_select or execute_state.is_update or execute_state.is_delete):
        if execute_state.is_insert:
            raise Forbidden("bulk inserts are not allowed in a tenant-scoped session")
        return
    if execute_state.is_select and (execute_state.is_column_load or execute_state.is_relationship_load):
        return  # the parent row was already filtered
    tenant_id = scope.tenant_id
    execute_state.statement = execute_state.statement.options(
        with_loader_criteria(TenantOwned, lambda cls: cls.tenant_id == tenant_id, include_aliases=True),
        with_loader_criteria(
            OriginItem,
            OriginItem.origin_id.in_(select(Origin.id).where(Origin.tenant_id == tenant_id)),
            include_aliases=True,
        ),
        with_loader_criteria(
            ServerItem,
            ServerItem.server_id.in_(select(VirtualServer.id).where(VirtualServer.tenant_id == tenant_id)),
            include_aliases=True,
        ),
    )


def _stamp(session: Session, _context: Any, _instances: Any) -> None:
    scope = scope_of(session)
    if scope.tenant_id is None:
        return
    for row in (*session.new, *session.dirty):
        if isinstance(row, TenantOwned):
            if row.tenant_id is None:
                row.tenant_id = scope.tenant_id
            elif row.tenant_id != scope.tenant_id:
                raise Forbidden("a write into another tenant was refused")


def install(session_class: type[Session]) -> None:
    """Attach the hooks to the sync Session class the Database's sessions use."""
    if not event.contains(session_class, "do_orm_execute", _criteria):
        event.listen(session_class, "do_orm_execute", _criteria)
        event.listen(session_class, "before_flush", _stamp)
