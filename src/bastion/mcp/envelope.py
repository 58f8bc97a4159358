"""What a POSTed MCP message is, by era: the SDK's era rule, the JSON-RPC request envelope, and the
2026-07-28 envelope ladder (routing headers against the body) with its `Mcp-Param-*` headers.
The transport (`bastion.mcp.transport`) decides what to do with the answers."""

from __future__ import annotations

from typing import Any

import mcp_types as mt
from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request, find_duplicated_routing_header
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError

from bastion.catalog import param_headers
from bastion.errors import BadRequest, HeaderMismatch, InvalidParams
from bastion.http.asgi import Scope

__all__ = ["is_modern", "modern_rejection", "param_headers_of", "parse_request"]


def is_modern(version: str | None) -> bool:
    """The SDK's era rule: any version header that is not a handshake revision is the 2026 wire."""
    return version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS


def parse_request(message: dict[str, Any]) -> mt.JSONRPCRequest:
    try:
        request = mt.JSONRPCRequest.model_validate(message)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"invalid JSON-RPC request: {where}: {first['msg']}") from None
    # The envelope model takes any params object; every method's `_meta` is an object (MCP's `RequestParams`).
    meta = request.params.get("_meta") if request.params is not None else None
    if meta is not None and not isinstance(meta, dict):
        raise InvalidParams(f"invalid {request.method} params: _meta: must be an object")
    return request


def modern_rejection(scope: Scope, message: dict[str, Any]) -> InboundLadderRejection | None:
    """The SDK's 2026-07-28 envelope ladder: `_meta` keys, routing headers vs body, version."""
    raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    duplicated = find_duplicated_routing_header(raw)
    if duplicated is not None:
        return InboundLadderRejection(code=mt.HEADER_MISMATCH, message=f"{duplicated} header appears more than once")
    verdict = classify_inbound_request(message, headers=dict(raw))
    return verdict if isinstance(verdict, InboundLadderRejection) else None


def param_headers_of(scope: Scope) -> dict[str, str] | None:
    """The request's `Mcp-Param-*` headers (2026-07-28), checked against its arguments by
    `tools/call`; None without any. One sent twice is refused here: readers would disagree."""
    found: dict[str, str] | None = None
    for name, value in scope["headers"]:
        if name.startswith(param_headers.PREFIX):
            found = {} if found is None else found
            key = name.decode("latin-1")
            if key in found:
                raise HeaderMismatch(f"{key} header appears more than once")
            found[key] = value.decode("latin-1")
    return found
