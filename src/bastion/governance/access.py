"""What one user may see and use on the data plane, decided from the snapshot alone.

`Member` is the snapshot's record of a user: tenant, teams, and the grants of
their roles. `Placement` says where an origin or a virtual server lives and who
may see it (visibility private / team / tenant; "selected spaces" are a team
visibility on an origin). `may_use` decides one item for one member through one
token; `bastion.catalog.views` applies it to a whole virtual server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bastion.governance.permissions import Grants

__all__ = ["Member", "Placement", "Visibility", "may_use"]

Visibility = Literal["private", "team", "tenant"]


@dataclass(frozen=True, slots=True)
class Placement:
    tenant_id: str
    visibility: Visibility = "tenant"
    owner_id: str | None = None
    team_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    tenant_id: str
    grants: Grants
    team_ids: frozenset[str] = frozenset()
    username: str = ""  # as the store has it now (a session's own claim is the name it began with)

    def sees(self, placement: Placement) -> bool:
        """Same tenant, and: the owner, or a member of one of its teams, or tenant-wide."""
        if placement.tenant_id != self.tenant_id:
            return False
        if placement.owner_id is not None and placement.owner_id == self.user_id:
            return True
        if placement.visibility == "tenant":
            return True
        if placement.visibility == "team":
            return not placement.team_ids.isdisjoint(self.team_ids)
        return False  # private, and not the owner

    def may(self, action: str, limit: Grants | None = None) -> bool:
        return self.grants.may(action) and (limit is None or limit.may(action))


def may_use(
    member: Member, limit: Grants | None, kind: str, server_slug: str, origin: tuple[str, Placement], name: str
) -> bool:
    """One item: its origin visible to the member, and both the roles and the token's limit allow it."""
    origin_name, placement = origin
    if not member.sees(placement):
        return False
    if not member.grants.may_use(kind, server_slug, origin_name, name):
        return False
    return limit is None or limit.may_use(kind, server_slug, origin_name, name)
