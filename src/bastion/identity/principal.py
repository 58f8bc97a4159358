"""The principal: what an authenticated request acts as (a frozen value)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCOPE_ADMIN", "SCOPE_MCP", "Principal"]

SCOPE_MCP = "mcp"
SCOPE_ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """An API token's grant, resolved from the in-memory snapshot."""

    token_id: str
    user_id: str
    username: str
    is_admin: bool
    scopes: frozenset[str]
    server_ids: frozenset[str]
    expires_at: float  # POSIX seconds

    def may_reach(self, server_id: str) -> bool:
        return SCOPE_MCP in self.scopes and server_id in self.server_ids

    @property
    def may_administer(self) -> bool:
        return self.is_admin and SCOPE_ADMIN in self.scopes
