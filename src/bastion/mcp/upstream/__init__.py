"""Clients for origin servers: one interface, a Streamable HTTP and a stdio implementation."""

from bastion.mcp.upstream.base import NotificationSink, OriginClient, ProgressSink
from bastion.mcp.upstream.pool import OriginPool

__all__ = ["NotificationSink", "OriginClient", "OriginPool", "ProgressSink"]
