"""Who a control-plane call acts for: a user (through the admin API) or the operator (the CLI).

An actor carries the tenant its calls are scoped to; every store session the
control plane opens uses `actor.scope`, so a query cannot reach another tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.errors import Forbidden
from bastion.governance.access import Member
from bastion.governance.permissions import Grants
from bastion.identity.principal import Principal
from bastion.store.models import DEFAULT_TENANT
from bastion.store.tenancy import Tenancy

__all__ = ["Actor"]


@dataclass(frozen=True, slots=True)
class Actor:
    username: str
    user_id: str | None
    tenant_id: str
    member: Member | None  # None: the operator at the CLI, who holds the database itself
    token: Principal | None = None  # the token the request came with (what it creates stays within it)

    @classmethod
    def operator(cls, tenant_id: str = DEFAULT_TENANT) -> Actor:
        return cls(username="operator", user_id=None, tenant_id=tenant_id, member=None)

    @property
    def limit(self) -> Grants | None:
        """The token's own permission limit (None: its roles decide alone)."""
        return self.token.limit if self.token is not None else None

    @property
    def scope(self) -> Tenancy:
        return Tenancy.of(self.tenant_id)

    @property
    def is_operator(self) -> bool:
        return self.member is None

    def may(self, action: str) -> bool:
        """Deny by default: only a matching grant (or the operator) allows."""
        return self.member is None or self.member.may(action, self.limit)

    def require(self, action: str) -> None:
        if not self.may(action):
            raise Forbidden(f"this needs the permission {action!r}, which your roles do not grant")
