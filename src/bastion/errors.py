"""The error tree. Every error Bastion raises on purpose is one of these.

    BastionError                      500  -32603  server_error
    ├── BadRequest                    400  -32600  invalid_request
    │   ├── ParseError                400  -32700
    │   ├── InvalidParams             400  -32602
    │   ├── HeaderMismatch            400  -32020
    │   ├── UnsupportedProtocolVersion 400 -32022
    │   ├── SessionRequired           400  -32600
    │   ├── RequestAborted            400  -32600  (the client left before its body ended: recorded, not answered)
    │   ├── InvalidGrant              400          invalid_grant   (OAuth: code/refresh/assertion)
    │   ├── InvalidScope              400          invalid_scope
    │   ├── UnauthorizedClient        400          unauthorized_client
    │   ├── UnsupportedGrantType      400          unsupported_grant_type
    │   ├── InvalidClientMetadata     400          invalid_client_metadata (RFC 7591)
    │   └── InvalidRedirectUri        400          invalid_redirect_uri (RFC 7591)
    ├── MethodNotFound                404  -32601
    ├── MethodNotAllowed              405  -32600  (an HTTP method the endpoint does not serve: carries Allow)
    ├── PayloadTooLarge               413  -32600
    ├── Unauthenticated               401  -32600  invalid_token
    │   ├── InvalidClient             401          invalid_client  (OAuth client authentication)
    │   └── AccountLocked             401          (too many failed logins; carries retry_after)
    ├── Forbidden                     403  -32600  insufficient_scope
    │   ├── InsufficientScope         403  -32600  (carries the required scope, for step-up)
    │   ├── AccessDenied              403          access_denied
    │   ├── ConnectionRequired        403  -32042  (the person must connect an origin: carries the URL)
    │   ├── PolicyDenied              403  -32600  (a pipeline stage refused the call: DLP, injection, rules)
    │   │   └── ApprovalRequired      403  -32600  (a side-effecting call the person did not approve)
    │   ├── Quarantined               403  -32600  (the item's definition is not the one approved)
    │   └── OriginNotAllowed          403  -32600
    ├── TooManyRequests               429  -32600  (carries retry_after seconds)
    ├── NotFound                      404  -32602  (unknown id, tool, session...)
    │   └── UnknownSession            404  -32600
    ├── Conflict                      409  -32600
    ├── RequestCancelled              200  -32800  (the reply to a request its client cancelled)
    ├── Unavailable                   503  -32603  temporarily_unavailable (cannot confirm state is current)
    └── UpstreamError                 502  -32603  (the origin failed us)
        ├── UpstreamUnavailable       502  -32603
        ├── UpstreamTimeout           504  -32001
        ├── UpstreamProtocolError     502  -32603
        ├── UpstreamTooLarge          502  -32603
        ├── UpstreamRefused           502  -32603  (Bastion's own policy: egress or stdio allowlist)
        ├── UpstreamUnauthorized      502  -32603  (the origin answered 401 to Bastion's credential)
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
    "AccessDenied",
    "AccountLocked",
    "ApprovalRequired",
    "AuditUnavailable",
    "BadRequest",
    "BastionError",
    "Conflict",
    "ConnectionRequired",
    "Forbidden",
    "HeaderMismatch",
    "InsufficientScope",
    "InvalidClient",
    "InvalidClientMetadata",
    "InvalidGrant",
    "InvalidParams",
    "InvalidRedirectUri",
    "InvalidScope",
    "MethodNotAllowed",
    "MethodNotFound",
    "NotFound",
    "OriginNotAllowed",
    "ParseError",
    "PayloadTooLarge",
    "PolicyDenied",
    "Quarantined",
    "RequestAborted",
    "RequestCancelled",
    "SessionRequired",
    "TooManyRequests",
    "Unauthenticated",
    "UnauthorizedClient",
    "Unavailable",
    "UnknownSession",
    "UnsupportedGrantType",
    "UnsupportedProtocolVersion",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamRefused",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamTooLarge",
    "UpstreamUnauthorized",
    "UpstreamUnavailable",
]


class BastionError(Exception):
    http_status: ClassVar[int] = 500
    jsonrpc_code: ClassVar[int] = mt.INTERNAL_ERROR
    oauth_error: ClassVar[str] = "server_error"
    # The id of the JSON-RPC request this error answers, once the MCP endpoint has read one (else
    # None, which the error body carries as JSON-RPC 2.0 §5 asks of an id that could not be read).
    request_id: str | int | None = None

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    @property
    def label(self) -> str:
        """The class name in snake_case (NotFound → not_found): the error's `code` in API bodies,
        its label in metrics and traces."""
        name = type(self).__name__
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")

    @property
    def is_denial(self) -> bool:
        """A refusal by rule (who may do what, how often), as opposed to a failure."""
        return isinstance(self, Unauthenticated | Forbidden | TooManyRequests)


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


class RequestAborted(BadRequest):
    """The client closed the connection before sending its whole body: there is nobody to answer, but
    the request is recorded like any other refused one."""


class InvalidGrant(BadRequest):
    oauth_error = "invalid_grant"


class InvalidScope(BadRequest):
    oauth_error = "invalid_scope"


class UnauthorizedClient(BadRequest):
    oauth_error = "unauthorized_client"


class UnsupportedGrantType(BadRequest):
    oauth_error = "unsupported_grant_type"


class InvalidClientMetadata(BadRequest):
    oauth_error = "invalid_client_metadata"


class InvalidRedirectUri(BadRequest):
    oauth_error = "invalid_redirect_uri"


class MethodNotFound(BastionError):
    http_status = 404
    jsonrpc_code = mt.METHOD_NOT_FOUND
    oauth_error = "invalid_request"


class MethodNotAllowed(BastionError):
    http_status = 405
    jsonrpc_code = mt.INVALID_REQUEST
    oauth_error = "invalid_request"

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow  # the `Allow` header's value (RFC 9110 §15.5.6)


class PayloadTooLarge(BastionError):
    http_status = 413
    jsonrpc_code = mt.INVALID_REQUEST
    oauth_error = "invalid_request"


class Unauthenticated(BastionError):
    http_status = 401
    jsonrpc_code = mt.INVALID_REQUEST
    oauth_error = "invalid_token"


class InvalidClient(Unauthenticated):
    oauth_error = "invalid_client"


class AccountLocked(Unauthenticated):
    oauth_error = "access_denied"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Forbidden(BastionError):
    http_status = 403
    jsonrpc_code = mt.INVALID_REQUEST
    oauth_error = "insufficient_scope"


class InsufficientScope(Forbidden):
    """RFC 6750 §3.1: the token lacks a scope; `required_scope` is what to ask for (step-up)."""

    def __init__(self, message: str, *, required_scope: str) -> None:
        super().__init__(message)
        self.required_scope = required_scope


class AccessDenied(Forbidden):
    oauth_error = "access_denied"


class ConnectionRequired(Forbidden):
    """A per-user OAuth origin has no usable grant for this person (never connected, disconnected,
    or the grant was lost): they connect it in a browser at the URL the error carries.

    On the wire it is the MCP 2025-11-25 "URL elicitation required" error (-32042), whose `data`
    lists one URL-mode elicitation, so a client that supports it can open the page for the person.
    """

    jsonrpc_code = mt.URL_ELICITATION_REQUIRED

    def __init__(self, message: str, *, url: str, elicitation_id: str) -> None:
        elicitation = {"mode": "url", "elicitationId": elicitation_id, "url": url, "message": message}
        super().__init__(f"{message}: open {url}", data={"elicitations": [elicitation]})
        self.url = url


class PolicyDenied(Forbidden):
    """A stage of the policy pipeline refused the call; the message names the stage's reason."""


class ApprovalRequired(PolicyDenied):
    """A side-effecting call that the person was asked about and did not approve (or could not be asked)."""


class Quarantined(Forbidden):
    """The origin offers the item as no administrator approved it (changed, or new since the connector's
    review): hidden and uncallable until approved."""


class TooManyRequests(BastionError):
    http_status = 429
    jsonrpc_code = mt.INVALID_REQUEST
    oauth_error = "temporarily_unavailable"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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


class Unavailable(BastionError):
    """A dependency that every decision needs (Redis, the store) is unreachable: refuse, never guess.

    Protected requests fail closed with this rather than decide from a snapshot that may
    predate a revocation; clients retry after `retry_after` seconds.
    """

    http_status = 503
    jsonrpc_code = mt.INTERNAL_ERROR
    oauth_error = "temporarily_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuditUnavailable(Unavailable):
    """A call that may only reach its origin once its audit record is in the store, and the store
    did not take the record: the call is refused, not forwarded."""


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


class UpstreamRefused(UpstreamError):
    """Bastion's own policy refused to reach the origin (egress allowlist, stdio allowlist).

    `message` goes to MCP clients and must not name internal addresses; `detail`
    (recorded as the origin's last error, shown to administrators only) may.
    """

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


class UpstreamUnauthorized(UpstreamError):
    """The origin answered HTTP 401: it did not accept the credential Bastion presented."""


class UpstreamRejected(UpstreamError):
    """The origin answered with a JSON-RPC error of its own: relayed with its code."""

    http_status = 200

    def __init__(self, code: int, message: str, *, data: Any = None, from_origin: bool = True) -> None:
        super().__init__(message, data=data if isinstance(data, dict) else None)
        self.code = code
        self.raw_data = data
        # The words are the origin's (its content: the audit trail keeps its code only), not
        # Bastion's about the exchange (a client that cannot be asked, or declined).
        self.from_origin = from_origin
