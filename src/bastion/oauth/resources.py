"""RFC 8707 resource indicators: each published virtual server is one protected resource."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.errors import BadRequest

if TYPE_CHECKING:  # annotations only: the snapshot's origin credentials import this package
    from bastion.catalog.snapshot import ServerView, Snapshot

__all__ = ["InvalidTarget", "check_same_resource", "lower_origin", "resource_url", "server_for_resource"]


class InvalidTarget(BadRequest):
    """RFC 8707 §2: the requested resource is invalid, unknown or not served here."""

    oauth_error = "invalid_target"


def resource_url(issuer: str, slug: str) -> str:
    """The canonical URI of a virtual server: its MCP endpoint (MCP authorization, "Canonical Server URI")."""
    return f"{issuer}/servers/{slug}/mcp"


def lower_origin(url: str) -> str:
    """`url` with its scheme and authority lowercased (RFC 3986 §6.2.2.1); the path kept as it is."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    return scheme.lower() + sep + authority.lower() + slash + path


def server_for_resource(snapshot: Snapshot, issuer: str, resource: str | None) -> ServerView:
    if not resource:
        # The MCP spec makes `resource` mandatory in authorization and token requests.
        raise InvalidTarget("the resource parameter is required: the URL of the virtual server's MCP endpoint")
    # RFC 8707 §2: the resource is an absolute URI without a fragment; compare it exactly
    # (after the scheme and host, which are case-insensitive) with a server's canonical URI.
    # The issuer is lowered the same way: an operator's public URL may be written in capitals.
    prefix, suffix = f"{lower_origin(issuer)}/servers/", "/mcp"
    normalised = lower_origin(resource)
    slug = (
        normalised[len(prefix) : -len(suffix)] if normalised.startswith(prefix) and normalised.endswith(suffix) else ""
    )
    server = snapshot.servers.get(slug) if slug and "/" not in slug else None
    if server is None or not server.published:
        raise InvalidTarget(f"{resource} is not a published virtual server of this Bastion")
    return server


def check_same_resource(snapshot: Snapshot, issuer: str, resource: str | None, server_id: str) -> None:
    """RFC 8707 §2.2: a `resource` at the token endpoint must name the server the grant is for."""
    if resource is not None and server_for_resource(snapshot, issuer, resource).id != server_id:
        raise InvalidTarget("resource differs from the one this grant is for")
