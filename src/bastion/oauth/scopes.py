"""The scopes Bastion grants to MCP clients, and how a request's `scope` parameter is read."""

from __future__ import annotations

from bastion.errors import InvalidScope
from bastion.identity.principal import SCOPE_MCP, SCOPE_MCP_READ, SCOPE_MCP_WRITE, scope_satisfied

__all__ = ["SUPPORTED_SCOPES", "for_client", "grantable_scopes", "narrowed"]

# `offline_access` is accepted (SEP-2207 clients add it to ask for refresh tokens) and
# carries no access of its own: clients registered for refresh_token get one either way.
SUPPORTED_SCOPES = (SCOPE_MCP, SCOPE_MCP_READ, SCOPE_MCP_WRITE, "offline_access")


def grantable_scopes(requested: str | None) -> tuple[str, ...]:
    """RFC 6749 §3.3: space-delimited; an omitted scope means the default, `mcp`."""
    names = tuple(dict.fromkeys((requested or "").split()))
    if not names:
        return (SCOPE_MCP,)
    unknown = [name for name in names if name not in SUPPORTED_SCOPES]
    if unknown:
        raise InvalidScope(f"unknown scope {unknown[0]!r}; this server grants {' '.join(SUPPORTED_SCOPES)}")
    return names


def for_client(requested: str | None, registered: str) -> tuple[str, ...]:
    """What an authorization request may ask for: the scopes a client registered (RFC 7591 §2
    `scope`) bound it, and an omitted scope asks for them; a client that registered none asks as
    `grantable_scopes` allows."""
    if not registered.split():
        return grantable_scopes(requested)
    allowed = tuple(name for name in dict.fromkeys(registered.split()) if name in SUPPORTED_SCOPES)
    if not allowed:
        raise InvalidScope(f"this client registered no scope this server grants ({' '.join(SUPPORTED_SCOPES)})")
    wanted = grantable_scopes(requested) if requested and requested.split() else allowed
    for scope in wanted:
        # `offline_access` grants nothing (it asks for a refresh token, SEP-2207): not one to register.
        if scope != "offline_access" and not scope_satisfied(scope, allowed):
            raise InvalidScope(f"scope {scope!r} is more than this client registered ({' '.join(allowed)})")
    return wanted


def narrowed(requested: str | None, granted: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 6749 §6: a refresh or exchange may ask for less than the grant, never more."""
    if not requested:
        return granted
    wanted = grantable_scopes(requested)
    for scope in wanted:
        if not scope_satisfied(scope, granted):
            raise InvalidScope(f"scope {scope!r} exceeds what was granted ({' '.join(granted)})")
    return wanted
