"""JSON-RPC framing for the data plane: decode with limits, encode replies."""

from __future__ import annotations

from typing import Any

import orjson

from bastion.errors import BadRequest, BastionError, ParseError, UpstreamRejected

__all__ = ["decode_body", "error_message", "is_request_id", "result_message"]


def is_request_id(value: Any) -> bool:
    """JSON-RPC 2.0 §4: a request id is a string or a number (Bastion's and MCP's: an integer)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def decode_body(body: bytes, *, max_depth: int) -> Any:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"the request body is not valid JSON ({exc.msg} at byte {exc.pos})") from None
    # A document nests no deeper than it has brackets (strings may hold more, never fewer): most
    # bodies have fewer than the limit, and counting them costs less than walking the value.
    if body.count(b"{") + body.count(b"[") > max_depth:
        _check_depth(value, max_depth)
    return value


def _check_depth(value: Any, max_depth: int) -> None:
    """Reject documents nested deeper than `max_depth` (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise BadRequest(f"the request body is nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def result_message(request_id: Any, result: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


def error_message(request_id: Any, error: BastionError) -> bytes:
    if isinstance(error, UpstreamRejected):
        payload: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.raw_data is not None:
            payload["data"] = error.raw_data
    else:
        payload = {"code": error.jsonrpc_code, "message": error.message}
        if error.data is not None:
            payload["data"] = error.data
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": payload})
