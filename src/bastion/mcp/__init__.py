"""The data plane: published virtual servers over MCP Streamable HTTP.

`transport` is the ASGI endpoint, `methods` answers each JSON-RPC method from
the current snapshot, `upstream` talks to origins. Nothing here imports the
store: decisions come from snapshots.
"""

from bastion.mcp.transport import McpEndpoint

__all__ = ["McpEndpoint"]
