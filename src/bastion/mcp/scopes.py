"""Which scope each MCP request needs (decided before the body is dispatched, for step-up).

`mcp:read` lists and reads and calls tools marked `readOnlyHint`; any other
tool call needs `mcp:write`. `mcp` covers both (scope hierarchy). A refusal is
HTTP 403 with `error="insufficient_scope"` naming the scope to ask for, so a
client can step up (MCP authorization, "Scope Challenge Handling").
"""

from __future__ import annotations

from typing import Any

from bastion.catalog.snapshot import ServerView
from bastion.errors import InsufficientScope
from bastion.identity.principal import SCOPE_MCP_READ, SCOPE_MCP_WRITE, Principal

__all__ = ["check_scope", "required_scope"]


def required_scope(server: ServerView, message: dict[str, Any]) -> str:
    if message.get("method") != "tools/call":
        return SCOPE_MCP_READ
    params = message.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    route = server.tools.get(name) if isinstance(name, str) else None
    if route is None:
        return SCOPE_MCP_READ  # an unknown tool is answered as unknown, whoever asks
    annotations = route.definition.get("annotations") or {}
    return SCOPE_MCP_READ if annotations.get("readOnlyHint") is True else SCOPE_MCP_WRITE


def check_scope(principal: Principal, server: ServerView, message: dict[str, Any]) -> None:
    if "method" not in message:
        return  # a reply to Bastion's own request: no scope of its own
    needed = required_scope(server, message)
    if not principal.has_scope(needed):
        raise InsufficientScope(f"this request needs the scope {needed!r}", required_scope=needed)
