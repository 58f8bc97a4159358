"""A call context for driving stages directly: real settings merged as the pipeline merges them."""

from __future__ import annotations

from typing import Any

from bastion.pipeline.base import Asker, CallContext, Item
from bastion.pipeline.config import merge, scope_chain

TOOL_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer"}, "note": {"type": "string"}},
    "required": ["order_id"],
}


def context(
    arguments: dict[str, Any] | None = None,
    *,
    policies: dict[str, dict[str, Any]] | None = None,
    annotations: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
    modern: bool = False,
    ask: Asker | None = None,
    session_id: str | None = None,
    capabilities: dict[str, Any] | None = None,
) -> CallContext:
    """A tools/call of `refund` (origin `shop`) through server `srv`, with `policies` at global scope."""
    definition: dict[str, Any] = {"name": "refund", "inputSchema": schema or TOOL_SCHEMA}
    if annotations is not None:
        definition["annotations"] = annotations
    settings = merge({"global": policies or {}}, scope_chain("srv", "shop", "refund"))
    return CallContext(
        method="tools/call",
        item=Item("tool", "refund", "refund", "shop", definition),
        params={"name": "refund", "arguments": arguments if arguments is not None else {"order_id": "A-1"}},
        principal_id="u1",
        principal_name="ann",
        tenant_id="default",
        server="srv",
        settings=settings,
        modern=modern,
        ask=ask,
        session_id=session_id,
        client_capabilities=capabilities,
    )
