"""The error tree. Every error Bastion raises on purpose is one of these.

    BastionError                      500  -32603  server_error
    ├── BadRequest                    400  -32600  invalid_request
    │   ├── ParseError                400  -32700
    │   ├── InvalidParams             400  -32602
    │   ├── HeaderMismatch            400  -32020
    │   ├── UnsupportedProtocolVersion 400 -32022
    │   └── SessionRequired           400  -32600
    ├── MethodNotFound                404  -32601
    ├── PayloadTooLarge               413  -32600
    ├── Unauthenticated               401  -32600  invalid_token
    ├── Forbidden                     403  -32600  insufficient_scope
    │   └── OriginNotAllowed          403  -32600
    ├── NotFound                      404  -32602  (unknown id, tool, session...)
    │   └── UnknownSession            404  -32600
    ├── Conflict                      409  -32600
    ├── RequestCancelled              200  -32800  (the reply to a request its client cancelled)
    └── UpstreamError                 502  -32603  (the origin failed us)
        ├── UpstreamUnavailable       502  -32603
        ├── UpstreamTimeout           504  -32001
        ├── UpstreamProtocolError     502  -32603
        ├── UpstreamTooLarge          502  -32603
        └── UpstreamRejected          200  origin's own JSON-RPC error, passed through

Each class carries its wire codes as attributes; `bastion.http.errors` is the one
table that renders them for HTTP and JSON-RPC. Domain code raises these and never
a framework HTTP exception. Messages are for people: say what went wrong and
what to do, and never include a secret.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mcp_types as mt

__all__ = [
    "BadRequest",
    "BastionError",
    "Conflict",
    "Forbidden",
    "HeaderMismatch",
    "InvalidParams",
    "MethodNotFound",
    "NotFound",
    "OriginNotAllowed",
    "ParseError",
    "PayloadTooLarge",
    "RequestCancelled",
    "SessionRequired",
    "Unauthenticated",
    "UnknownSession",
    "UnsupportedProtocolVersion",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamTooLarge",
    "UpstreamUnavailable",
]


class BastionError(Exception):
    http_status: ClassVar[int] = 500
    jsonrpc_code: ClassVar[int] = mt.INTERNAL_ERROR
    oauth_error: ClassVar[str] = "server_error"

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class BadRequest(BastionError):
    http_status = 400
    jsonrpc_code = mt.INVALID_REQUEST
    oauth_error = "invalid_request"


class ParseError(BadRequest):
    jsonrpc_code = mt.PARSE_ERROR


class InvalidParams(BadRequest):
    jsonrpc_code = mt.INVALID_PARAMS


class HeaderMismatch(BadRequest):
    jsonrpc_code = mt.HEADER_MISMATCH


class UnsupportedProtocolVersion(BadRequest):
    jsonrpc_code = mt.UNSUPPORTED_PROTOCOL_VERSION


class SessionRequired(BadRequest):
    pass


class MethodNotFound(BastionError):
    http_status = 404
    jsonrpc_code = mt.METHOD_NOT_FOUND
    oauth_error = "invalid_request"


class PayloadTooLarge(BastionError):
    http_status = 413
    jsonrpc_code = mt.INVALID_REQUEST
    oauth_error = "invalid_request"


class Unauthenticated(BastionError):
    http_status = 401
    jsonrpc_code = mt.INVALID_REQUEST
    oauth_error = "invalid_token"


class Forbidden(BastionError):
    http_status = 403
    jsonrpc_code = mt.INVALID_REQUEST
    oauth_error = "insufficient_scope"


class OriginNotAllowed(Forbidden):
    pass


class NotFound(BastionError):
    http_status = 404
    jsonrpc_code = mt.INVALID_PARAMS
    oauth_error = "invalid_request"


class UnknownSession(NotFound):
    jsonrpc_code = mt.INVALID_REQUEST


class Conflict(BastionError):
    http_status = 409
    jsonrpc_code = mt.INVALID_REQUEST
    oauth_error = "invalid_request"


class RequestCancelled(BastionError):
    # -32800 is the code the MCP SDKs use for this reply; the spec leaves it open.
    http_status = 200
    jsonrpc_code = -32800


class UpstreamError(BastionError):
    http_status = 502
    jsonrpc_code = mt.INTERNAL_ERROR


class UpstreamUnavailable(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    http_status = 504
    jsonrpc_code = mt.REQUEST_TIMEOUT


class UpstreamProtocolError(UpstreamError):
    pass


class UpstreamTooLarge(UpstreamError):
    pass


class UpstreamRejected(UpstreamError):
    """The origin answered with a JSON-RPC error of its own: relayed with its code."""

    http_status = 200

    def __init__(self, code: int, message: str, *, data: Any = None) -> None:
        super().__init__(message, data=data if isinstance(data, dict) else None)
        self.code = code
        self.raw_data = data
