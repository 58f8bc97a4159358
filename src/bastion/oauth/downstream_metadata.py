"""Where to connect for an origin: RFC 9728 protected resource metadata, then RFC 8414 metadata.

The discovery half of Bastion's OAuth client toward origins (`bastion.oauth.downstream`):
* RFC 9728 protected resource metadata (§3.1 well-known URL, §3.3 `resource` must match),
* then RFC 8414 authorization server metadata (§3.1 well-known URL, §3.3 `issuer` must match),
  falling back to OpenID Connect Discovery 1.0 (§4.1) as the MCP authorization spec does;
  S256 PKCE must be offered (MCP requires it).
Every fetch goes through `bastion.net.egress` (no redirects, size and time limits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bastion.errors import BadRequest, UpstreamProtocolError
from bastion.net.egress import EgressPolicy, fetch_limited
from bastion.oauth.federation import json_object
from bastion.oauth.oidc_discovery import discovery_url
from bastion.oauth.resources import lower_origin

__all__ = [
    "DownstreamServer",
    "discover",
    "parse_authorization_server_metadata",
    "parse_resource_metadata",
    "root_well_known_url",
    "string_list",
    "well_known_url",
]

_MAX_BYTES = 256 * 1024  # metadata documents are a few kilobytes
_TIMEOUT_SECONDS = 10.0
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_PRM_WELL_KNOWN = "/.well-known/oauth-protected-resource"
_AS_WELL_KNOWN = "/.well-known/oauth-authorization-server"
_OIDC_WELL_KNOWN = "/.well-known/openid-configuration"


@dataclass(frozen=True)
class DownstreamServer:
    """A protected resource and the authorization server that guards it, as discovered."""

    resource: str  # RFC 9728 `resource`: the value sent as RFC 8707 `resource`
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None
    revocation_endpoint: str | None
    scopes_supported: tuple[str, ...]  # the resource's own list (RFC 9728), else the server's (RFC 8414)
    iss_parameter_supported: bool  # RFC 9207: authorization responses carry `iss`


def _checked_url(value: object, what: str, where: str) -> str:
    """An absolute https URL without a fragment (plain http only to this machine, for tests and local servers)."""
    if not isinstance(value, str) or not value:
        raise UpstreamProtocolError(f"{where}: {what} is missing")
    parts = urlsplit(value)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise UpstreamProtocolError(f"{where}: {what} must be an https URL (http only on loopback)")
    if not parts.hostname or parts.fragment:
        raise UpstreamProtocolError(f"{where}: {what} must be an absolute URL without a fragment")
    return value


def well_known_url(url: str, suffix: str) -> str:
    """RFC 9728 §3.1 / RFC 8414 §3.1: the well-known segment goes between the host and the path."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")  # a terminating slash is removed before inserting
    return urlunsplit((parts.scheme, parts.netloc, suffix + path, "", ""))


def root_well_known_url(url: str, suffix: str) -> str:
    """The well-known document at the root of `url`'s origin (MCP clients' fallback for RFC 9728)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, suffix, "", ""))


def string_list(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


# --- metadata ----------------------------------------------------------------------------------


def parse_resource_metadata(resource_url: str, document: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """RFC 9728: (the first authorization server's issuer, the scopes the resource lists)."""
    where = f"the protected resource metadata of {resource_url}"
    resource = document.get("resource")
    # RFC 9728 §3.3: identical to the resource the URL was built from, or it describes another one
    # (scheme and host compared case-insensitively, RFC 3986 §6.2.2.1, as bastion.oauth.resources does).
    if not isinstance(resource, str) or lower_origin(resource) != lower_origin(resource_url):
        raise UpstreamProtocolError(
            f"{where} names another resource ({str(resource)[:200]!r}); refused (RFC 9728 §3.3)"
        )
    servers = string_list(document.get("authorization_servers"))
    if not servers:
        raise UpstreamProtocolError(f"{where} names no authorization server (RFC 9728 §2)")
    return _checked_url(servers[0], "authorization_servers[0]", where), string_list(document.get("scopes_supported"))


def parse_authorization_server_metadata(
    expected_issuer: str, resource: str, document: Mapping[str, Any], resource_scopes: tuple[str, ...] = ()
) -> DownstreamServer:
    """RFC 8414 §3.3: the document fetched for `expected_issuer`, refused unless it is that issuer's."""
    where = f"the authorization server metadata of {expected_issuer}"
    issuer = document.get("issuer")
    if issuer != expected_issuer:
        raise UpstreamProtocolError(
            f"{where} names another issuer ({str(issuer)[:200]!r}); refused (RFC 8414 §3.3, mix-up defence)"
        )
    if "S256" not in string_list(document.get("code_challenge_methods_supported")):
        # MCP authorization: clients must refuse a server that does not advertise PKCE S256.
        raise UpstreamProtocolError(f"{expected_issuer} does not support PKCE with S256; refused (MCP requires it)")
    optional = {
        key: None if document.get(key) is None else _checked_url(document[key], key, where)
        for key in ("registration_endpoint", "revocation_endpoint")
    }
    return DownstreamServer(
        resource=resource,
        issuer=expected_issuer,
        authorization_endpoint=_checked_url(document.get("authorization_endpoint"), "authorization_endpoint", where),
        token_endpoint=_checked_url(document.get("token_endpoint"), "token_endpoint", where),
        registration_endpoint=optional["registration_endpoint"],
        revocation_endpoint=optional["revocation_endpoint"],
        scopes_supported=resource_scopes or string_list(document.get("scopes_supported")),
        iss_parameter_supported=document.get("authorization_response_iss_parameter_supported") is True,
    )


async def _get_json(
    policy: EgressPolicy, url: str, *, ssl: SSLContext | None, timeout_seconds: float
) -> dict[str, Any] | None:
    """The JSON object at `url`, or None when it answers 404 (the next candidate URL is tried)."""
    fetched = await fetch_limited(
        policy,
        url,
        max_bytes=_MAX_BYTES,
        timeout_seconds=timeout_seconds,
        ssl=ssl,
        headers={"Accept": "application/json"},
    )
    if fetched.status == 404:
        return None
    if fetched.status != 200:
        raise UpstreamProtocolError(f"{url} answered HTTP {fetched.status}")
    return json_object(fetched.body, url)


async def discover(
    resource_url: str,
    *,
    egress: EgressPolicy,
    ssl: SSLContext | None = None,
    timeout_seconds: float = _TIMEOUT_SECONDS,
) -> DownstreamServer:
    """The authorization server of the MCP resource at `resource_url`, and its endpoints."""
    resource = _checked_url(resource_url, "the resource URL", "discovery")
    if urlsplit(resource).query:
        raise BadRequest("the resource URL must not carry a query (RFC 8707 §2)")
    # RFC 9728 §3.1 (path inserted), then the origin's root document, as MCP 2025-11-25 clients try.
    candidates = dict.fromkeys(
        (well_known_url(resource, _PRM_WELL_KNOWN), root_well_known_url(resource, _PRM_WELL_KNOWN))
    )
    prm = await _first_document(candidates, egress=egress, ssl=ssl, timeout_seconds=timeout_seconds)
    if prm is None:
        raise UpstreamProtocolError(f"{resource_url} publishes no protected resource metadata (RFC 9728)")
    issuer, scopes = parse_resource_metadata(resource, prm)
    # RFC 8414 §3.1, then OpenID Connect Discovery (inserted as RFC 8414 §5 describes, then appended, §4.1).
    candidates = dict.fromkeys(
        (well_known_url(issuer, _AS_WELL_KNOWN), well_known_url(issuer, _OIDC_WELL_KNOWN), discovery_url(issuer))
    )
    metadata = await _first_document(candidates, egress=egress, ssl=ssl, timeout_seconds=timeout_seconds)
    if metadata is None:
        raise UpstreamProtocolError(f"{issuer} publishes no authorization server metadata (RFC 8414)")
    return parse_authorization_server_metadata(issuer, resource, metadata, scopes)


async def _first_document(
    urls: Mapping[str, None], *, egress: EgressPolicy, ssl: SSLContext | None, timeout_seconds: float
) -> dict[str, Any] | None:
    for url in urls:
        document = await _get_json(egress, url, ssl=ssl, timeout_seconds=timeout_seconds)
        if document is not None:
            return document
    return None
