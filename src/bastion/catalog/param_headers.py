"""2026-07-28 `Mcp-Param-*` headers: tool arguments a tool's schema marks (`x-mcp-header`) to be
mirrored into HTTP headers, so intermediaries can route on them without parsing the body.

Bastion is such an intermediary both ways. Toward its clients it is the server: a `tools/call`
whose `Mcp-Param-*` headers disagree with its arguments is refused (the spec's MUST; a proxy in
front of Bastion may have acted on the header). Toward an origin it is the client: it sends the
headers the origin's schema asks for, or the origin refuses the call. The SDK's own codec and
checks (`mcp.shared.inbound`) do the work; this module only keeps each tool's map with its route.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.shared.inbound import (
    MCP_PARAM_HEADER_PREFIX,
    find_invalid_x_mcp_header,
    mcp_param_headers,
    validate_mcp_param_headers,
    x_mcp_header_map,
)

__all__ = ["PREFIX", "ParamHeaders", "declared", "mirrored", "mismatch"]

ParamHeaders = Mapping[tuple[str, ...], str]  # argument path → header token
PREFIX = MCP_PARAM_HEADER_PREFIX.lower().encode()  # as ASGI spells header names


def declared(definition: Mapping[str, Any]) -> ParamHeaders:
    """The headers a tool definition asks for; none when its annotations are invalid (conforming
    clients then drop the tool, and send nothing for it)."""
    schema = definition.get("inputSchema")
    if not isinstance(schema, dict) or find_invalid_x_mcp_header(schema) is not None:
        return {}
    return x_mcp_header_map(schema)


def mismatch(definition: Mapping[str, Any], arguments: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
    """Why a call's `Mcp-Param-*` headers disagree with its arguments, or None when they agree."""
    rejection = validate_mcp_param_headers(definition.get("inputSchema"), arguments, headers)
    return None if rejection is None else rejection.message


def mirrored(declared_headers: ParamHeaders, arguments: Mapping[str, Any]) -> dict[str, str]:
    """The `Mcp-Param-*` headers for a call with `arguments` to a tool that declares them."""
    return mcp_param_headers(declared_headers, arguments) if declared_headers else {}
