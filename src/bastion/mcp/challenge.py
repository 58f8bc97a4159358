"""How the MCP endpoint answers a request it refuses before dispatch: the HTTP status of the error,
a JSON-RPC error body, and, for a token problem, the `WWW-Authenticate: Bearer` challenge where the
client learns how to get (more of) a token (RFC 6750 §3, RFC 9728 §5.1). And the HTTP status of an
error a method answered (`dispatch_status`)."""

from __future__ import annotations

from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS

from bastion.errors import (
    BastionError,
    Forbidden,
    InsufficientScope,
    MethodNotAllowed,
    OriginNotAllowed,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)
from bastion.http.asgi import Scope, Send, header, send_bytes
from bastion.identity.principal import SCOPE_MCP
from bastion.mcp.jsonrpc import error_message

__all__ = ["bearer_challenge", "dispatch_status", "refuse"]

Headers = list[tuple[bytes, bytes]]


def bearer_challenge(base_url: str, slug: str, scope: Scope, error: BastionError) -> str | None:
    """The challenge for `error` at server `slug`, or None when the error is no token's matter."""
    metadata = f"{base_url}/.well-known/oauth-protected-resource/servers/{slug}/mcp"
    if isinstance(error, Unauthenticated):
        # §3.1: no error code when the request carried no credentials at all.
        presented = header(scope, b"authorization") is not None
        code = ', error="invalid_token"' if presented else ""
        return f'Bearer resource_metadata="{metadata}", scope="{SCOPE_MCP}"{code}'
    if isinstance(error, InsufficientScope):
        return (
            f'Bearer resource_metadata="{metadata}", error="insufficient_scope", '
            f'scope="{error.required_scope}", error_description="{error.message}"'
        )
    if isinstance(error, Forbidden) and not isinstance(error, OriginNotAllowed):
        return f'Bearer resource_metadata="{metadata}", error="insufficient_scope"'
    return None


def _back_off(error: BastionError) -> Headers:
    """A limit reached, or a dependency every decision needs out of reach: when to retry."""
    if isinstance(error, (Unavailable, TooManyRequests)):
        return [(b"retry-after", str(error.retry_after).encode())]
    return []


def dispatch_status(error: BastionError, *, modern: bool) -> tuple[int, Headers]:
    """The HTTP status (and headers) of a JSON-RPC error a method answered: 200 in the handshake
    revisions, the error code's status in 2026-07-28. A limit reached, or a dependency every
    decision needs out of reach (the limiter, the audit journal), is HTTP's to say in every
    revision, with `Retry-After`: clients and proxies back off."""
    if isinstance(error, (TooManyRequests, Unavailable)):
        return error.http_status, _back_off(error)
    return (ERROR_CODE_HTTP_STATUS.get(error.jsonrpc_code, 200) if modern else 200), []


async def refuse(send: Send, error: BastionError, challenge: str | None) -> None:
    """A transport-level refusal: HTTP status from the error, JSON-RPC error body."""
    headers = [] if challenge is None else [(b"www-authenticate", challenge.encode())]
    headers += _back_off(error)
    if isinstance(error, MethodNotAllowed):
        headers.append((b"allow", error.allow.encode()))
    await send_bytes(send, error.http_status, error_message(error.request_id, error), headers=headers)
