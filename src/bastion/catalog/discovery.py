"""Asks an origin what it offers: every page of tools, resources, templates and prompts."""

from __future__ import annotations

from typing import Any

import mcp_types as mt
from pydantic import BaseModel, ValidationError

from bastion.catalog.snapshot import MAX_ITEM_NAME
from bastion.errors import UpstreamProtocolError, UpstreamRejected
from bastion.mcp.upstream.base import OriginClient

__all__ = ["DiscoveredItem", "discover"]

DiscoveredItem = tuple[str, str, dict[str, Any]]  # (kind, name or URI, definition)

# (capability, list method, result key, item model, kind, field naming the item)
_LISTS: tuple[tuple[str, str, str, type[BaseModel], str, str], ...] = (
    ("tools", "tools/list", "tools", mt.Tool, "tool", "name"),
    ("resources", "resources/list", "resources", mt.Resource, "resource", "uri"),
    (
        "resources",
        "resources/templates/list",
        "resourceTemplates",
        mt.ResourceTemplate,
        "resource_template",
        "uriTemplate",
    ),
    ("prompts", "prompts/list", "prompts", mt.Prompt, "prompt", "name"),
)
_MAX_PAGES = 100  # a paginator that never ends must not hang discovery


async def discover(client: OriginClient, capabilities: dict[str, Any]) -> list[DiscoveredItem]:
    items: list[DiscoveredItem] = []
    for capability, method, key, model, kind, name_field in _LISTS:
        if capability not in capabilities:
            continue
        for entry in await _all_pages(client, method, key):
            try:
                model.model_validate(entry)
            except ValidationError as exc:
                raise UpstreamProtocolError(
                    f"origin {client.spec.name!r} offered a malformed {kind}: {exc.errors()[0]['msg']}"
                ) from exc
            name = str(entry[name_field])
            if len(name) > MAX_ITEM_NAME:
                raise UpstreamProtocolError(
                    f"origin {client.spec.name!r} offered a {kind} named longer than {MAX_ITEM_NAME} characters"
                )
            items.append((kind, name, entry))
    return items


async def _all_pages(client: OriginClient, method: str, key: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        try:
            result = await client.request(method, {"cursor": cursor} if cursor else None)
        except UpstreamRejected as exc:
            if exc.code == mt.METHOD_NOT_FOUND:  # declared the capability but not this list
                return entries
            raise
        page = result.get(key)
        if not isinstance(page, list):
            raise UpstreamProtocolError(f"origin {client.spec.name!r} answered {method} without a {key} list")
        entries.extend(page)
        cursor = result.get("nextCursor")
        if not cursor:
            return entries
    raise UpstreamProtocolError(f"origin {client.spec.name!r} paginated {method} past {_MAX_PAGES} pages")
