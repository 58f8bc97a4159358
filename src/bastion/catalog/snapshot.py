"""Immutable, epoch-stamped views of the catalog and tokens for the data plane.

Built off the hot path (at start and on each change), read lock-free per
request: a request keeps the snapshot it started with.
"""

from __future__ import annotations

import functools
import hashlib
import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate

from bastion.governance.access import Member, Placement
from bastion.identity.principal import Principal
from bastion.vault.credentials import OriginCredential

__all__ = [
    "MAX_ITEM_NAME",
    "SLUG_PATTERN",
    "ItemKind",
    "OriginAccess",
    "OriginSpec",
    "Route",
    "ServerView",
    "Snapshot",
    "definition_digest",
]

ItemKind = Literal["tool", "resource", "resource_template", "prompt"]
MAX_ITEM_NAME = 512  # longest item name (tool, prompt, URI): the width of the store's name columns
# A virtual server's slug: what the admin API accepts, and all the MCP endpoint's path may name.
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def definition_digest(definition: dict[str, Any]) -> str:
    """Stable SHA-256 of an item definition (canonical JSON), used to pin it."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class OriginSpec:
    id: str
    name: str
    transport: Literal["http", "stdio"]
    url: str | None
    command: tuple[str, ...] | None
    timeout_seconds: float | None
    # The service credential injected on each request to it (headers masked in every repr).
    credential: OriginCredential | None = None
    tenant_id: str = "default"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a client-visible item really lives."""

    origin_id: str
    kind: ItemKind
    upstream_name: str
    exposed_name: str
    definition: dict[str, Any]  # as clients see it (name replaced by exposed_name)
    # A tool's `Mcp-Param-*` headers (`bastion.catalog.param_headers`): usually none.
    param_headers: Mapping[tuple[str, ...], str] = field(default_factory=dict)


@functools.lru_cache(maxsize=4096)
def _canonical_uri(uri: str) -> str:
    """A URI as two spellings of one resource compare equal: percent-decoded, dot segments
    removed (RFC 3986 §5.2.4, as POSIX paths resolve them), scheme and host in lower case."""
    parts = urlsplit(unquote(uri))
    path = parts.path
    if path:
        resolved = posixpath.normpath(path)
        path = "" if resolved == "." else resolved + ("/" if path.endswith("/") and resolved != "/" else "")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, parts.fragment))


@functools.lru_cache(maxsize=1024)
def _template(text: str) -> UriTemplate | None:
    """A template's parse, once per text; one the SDK cannot read matches nothing."""
    try:
        return UriTemplate.parse(text)
    except InvalidUriTemplate:
        return None


@dataclass(frozen=True, slots=True)
class ServerView:
    id: str
    slug: str
    title: str
    description: str
    published: bool
    tools: dict[str, Route] = field(default_factory=dict)
    prompts: dict[str, Route] = field(default_factory=dict)
    resources: dict[str, Route] = field(default_factory=dict)
    templates: tuple[Route, ...] = ()
    placement: Placement = field(default_factory=lambda: Placement("default"))
    # In a view filtered for one member (`bastion.catalog.views`): the (kind, exposed name) of
    # items the server offers that this member may not use, so a call is refused as forbidden.
    denied: frozenset[tuple[str, str]] = frozenset()
    # (kind, exposed name) of items whose origin offers a definition no administrator approved
    # (changed since it was pinned, or new): hidden and uncallable until approved.
    quarantined: frozenset[tuple[str, str]] = frozenset()
    # URIs of resources an administrator switched off on this server: no template reaches them.
    disabled: frozenset[str] = frozenset()

    def resource_for(self, uri: str) -> Route | None:
        """The concrete resource `uri` names, as listed or spelled any other way that reaches it
        (percent-encoded, dot segments, another case of scheme or host): its own policies apply, not
        those of a template that matches the other spelling too."""
        route = self.resources.get(uri)
        if route is not None:
            return route
        key = _canonical_uri(uri)
        return next((route for name, route in self.resources.items() if _canonical_uri(name) == key), None)

    def template_for(self, uri: str) -> Route | None:
        """The resource template `uri` matches as a whole (RFC 6570, the SDK's matcher); of several,
        the one with the longest literal prefix. A URI of a resource this view withholds
        (quarantined, denied to this member, switched off) is no template's: it is refused as itself."""
        if self.withholds(uri):
            return None
        best: Route | None = None
        best_len = -1
        for route in self.templates:
            template = _template(route.upstream_name)
            prefix = route.upstream_name.split("{", 1)[0]
            if template is not None and len(prefix) > best_len and template.match(uri) is not None:
                best, best_len = route, len(prefix)
        return best

    def withholds(self, uri: str) -> bool:
        """Whether `uri` names a resource this view withholds, spelled any way that reaches it:
        percent-encoded, with dot segments, in another case of scheme or host."""
        withheld = [name for kind, name in (*self.quarantined, *self.denied) if kind == "resource"]
        withheld += self.disabled
        if not withheld:
            return False
        key = _canonical_uri(uri)
        return any(_canonical_uri(name) == key for name in withheld)

    def template_named(self, uri_template: str) -> Route | None:
        """The resource template offered under exactly this text (a completion's `ref/resource`)."""
        return next((route for route in self.templates if route.upstream_name == uri_template), None)


@dataclass(frozen=True, slots=True)
class OriginAccess:
    """Who may reach an origin's items: its name (what permissions name), placement, approval."""

    name: str
    placement: Placement
    approved: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    epoch: int
    servers: dict[str, ServerView]  # by slug; routes only to approved origins of the server's tenant
    origins: dict[str, OriginSpec]  # by id
    tokens: dict[str, Principal]  # by SHA-256 of the token
    members: dict[str, Member] = field(default_factory=dict)  # by user id
    origin_access: dict[str, OriginAccess] = field(default_factory=dict)  # by origin id
    tenants: dict[str, str] = field(default_factory=dict)  # tenant id by slug
    # The pipeline's stored policies: tenant id → scope → stage → the fields set there.
    policies: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    # Views of a server filtered for one member and token limit, built on first use
    # (`bastion.catalog.views`); a snapshot is replaced on every change, and the cache with it.
    views: dict[Any, ServerView] = field(default_factory=dict, compare=False)

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(epoch=-1, servers={}, origins={}, tokens={})
