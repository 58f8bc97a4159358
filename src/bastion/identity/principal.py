"""The principal: what an authenticated request acts as (a frozen value), and the scope rules.

Scopes form a hierarchy by `:` segments (a granted `mcp` satisfies a required
`mcp:read`), as the MCP authorization spec (2026-07-28) asks of scope checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bastion.governance.permissions import Grants
from bastion.identity.token_rules import TokenRules

__all__ = ["SCOPE_ADMIN", "SCOPE_MCP", "SCOPE_MCP_READ", "SCOPE_MCP_WRITE", "Principal", "scope_satisfied"]

SCOPE_MCP = "mcp"  # everything a virtual server offers
SCOPE_MCP_READ = "mcp:read"  # list and read items; call tools marked readOnlyHint
SCOPE_MCP_WRITE = "mcp:write"  # call tools not marked read-only
SCOPE_ADMIN = "admin"


def scope_satisfied(required: str, granted: Iterable[str]) -> bool:
    """True when `granted` holds `required` or a broader scope above it (`a` covers `a:b`)."""
    return any(required == scope or required.startswith(scope + ":") for scope in granted)


@dataclass(frozen=True, slots=True)
class Principal:
    """A token's grant: an API token from the snapshot, or an OAuth access token."""

    token_id: str
    user_id: str
    username: str
    is_admin: bool
    scopes: frozenset[str]
    server_ids: frozenset[str]  # audience: the virtual servers this token may reach
    expires_at: float  # POSIX seconds
    client_id: str | None = None  # the OAuth client it was issued to (None: an API token)
    grant_id: str | None = None  # OAuth: the grant (token family) it belongs to
    roles: frozenset[str] = field(default_factory=frozenset)
    # An API token's permission limit, below its user's roles (None: the roles decide alone).
    limit: Grants | None = None
    # An API token's own limits: source networks, validity start, quota (None: an OAuth token).
    rules: TokenRules | None = None

    def may_reach(self, server_id: str) -> bool:
        return server_id in self.server_ids and any(
            scope_satisfied(s, self.scopes) for s in (SCOPE_MCP_READ, SCOPE_MCP_WRITE)
        )

    @property
    def session_owner(self) -> str:
        """What an MCP session is bound to: for OAuth, the user and client (so a refresh or a
        scope step-up, which bring new tokens, keep the session); an API token is its own."""
        return f"user:{self.user_id}:client:{self.client_id}" if self.client_id else self.token_id

    def has_scope(self, required: str) -> bool:
        return scope_satisfied(required, self.scopes)

    @property
    def may_administer(self) -> bool:
        """May use the control-plane API at all; each route then asks for its permission."""
        return SCOPE_ADMIN in self.scopes
