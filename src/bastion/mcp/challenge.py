"""How the MCP endpoint answers a request it refuses before dispatch: the HTTP status of the error,
a JSON-RPC error body, and, for a token problem, the `WWW-Authenticate: Bearer` challenge where the
client learns how to get (more of) a token (RFC 6750 §3, RFC 9728 §5.1)."""

from __future__ import annotations

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

__all__ = ["bearer_challenge", "refuse"]


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


async def refuse(send: Send, error: BastionError, challenge: str | None) -> None:
    """A transport-level refusal: HTTP status from the error, JSON-RPC error body."""
    headers = [] if challenge is None else [(b"www-authenticate", challenge.encode())]
    if isinstance(error, (Unavailable, TooManyRequests)):
        headers.append((b"retry-after", str(error.retry_after).encode()))
    if isinstance(error, MethodNotAllowed):
        headers.append((b"allow", error.allow.encode()))
    await send_bytes(send, error.http_status, error_message(error.request_id, error), headers=headers)
