"""Clients for origin servers: one interface, a Streamable HTTP and a stdio implementation."""

from bastion.mcp.upstream.base import NotificationSink, OriginClient, OriginGuard, ProgressSink
from bastion.mcp.upstream.commands import ChildLimits, StdioPolicy
from bastion.mcp.upstream.pool import OriginPool

__all__ = [
    "ChildLimits",
    "NotificationSink",
    "OriginClient",
    "OriginGuard",
    "OriginPool",
    "ProgressSink",
    "StdioPolicy",
]
