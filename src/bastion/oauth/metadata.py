"""RFC 8414 authorization server metadata (also served as OpenID discovery) and
RFC 9728 protected resource metadata for each published virtual server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bastion.catalog.snapshot import ServerView
from bastion.identity.principal import SCOPE_MCP, SCOPE_MCP_READ, SCOPE_MCP_WRITE
from bastion.oauth.resources import resource_url
from bastion.oauth.scopes import SUPPORTED_SCOPES

__all__ = ["authorization_server_metadata", "protected_resource_metadata"]


def authorization_server_metadata(
    issuer: str,
    *,
    grant_types: Sequence[str],
    registration: bool,
    client_documents: bool,
    grant_profiles: Sequence[str] = (),
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "issuer": issuer,  # RFC 8414 §3.3: identical to the issuer the metadata URL was built from
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "jwks_uri": f"{issuer}/oauth/jwks.json",
        "scopes_supported": list(SUPPORTED_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(grant_types),
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],  # OAuth 2.1 / MCP: S256 only
        "authorization_response_iss_parameter_supported": True,  # RFC 9207 §3
        "client_id_metadata_document_supported": client_documents,  # MCP 2025-11-25, CIMD
        # OpenID Provider Metadata fields, so OIDC discovery clients can read the same document.
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }
    if registration:
        document["registration_endpoint"] = f"{issuer}/oauth/register"
    if grant_profiles:
        # ID-JAG §7.2 / MCP Enterprise-Managed Authorization §6: how clients learn the profile is on.
        document["authorization_grant_profiles_supported"] = list(grant_profiles)
    return document


def protected_resource_metadata(issuer: str, server: ServerView) -> dict[str, Any]:
    """RFC 9728 §2: the resource is the server's MCP URL; Bastion is its authorization server."""
    return {
        "resource": resource_url(issuer, server.slug),
        "authorization_servers": [issuer],
        "scopes_supported": [SCOPE_MCP, SCOPE_MCP_READ, SCOPE_MCP_WRITE],
        "bearer_methods_supported": ["header"],  # RFC 6750 §2.1 only; never a query parameter
        "resource_name": server.title or server.slug,
    }
